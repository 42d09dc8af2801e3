"""Wakes long-polling claims the moment tasks are queued, and the intake the moment an order is placed.

Each replica keeps one LISTEN connection (PostgreSQL); a split or requeue here also wakes local waiters
at once. Waiters still re-check every FALLBACK_POLL seconds (the intake every intake_interval), so a lost
notification costs latency, never a task.
"""

import asyncio
import logging
from contextlib import suppress

import psycopg

from salad.core.db import ORDERS_CHANNEL, TASKS_CHANNEL, libpq_url

FALLBACK_POLL = 1.0  # seconds
RECONNECT_DELAY = 1.0  # seconds

log = logging.getLogger(__name__)


class QueueSignal:
    """An edge-triggered event: `wait` returns when `fire` is called after the wait began."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, FALLBACK_POLL)):  # no task of its own, as wait_for makes
                await self._event.wait()


async def listen(database_url: str, tasks_queued: QueueSignal, order_placed: asyncio.Event) -> None:
    """Fire `tasks_queued`, set `order_placed`, on their notifications; reconnects after database outages."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True) as conn:
                await conn.execute(f"LISTEN {TASKS_CHANNEL}")
                await conn.execute(f"LISTEN {ORDERS_CHANNEL}")
                tasks_queued.fire()  # tasks or orders may have come while we were not listening
                order_placed.set()
                async for note in conn.notifies():
                    if note.channel == ORDERS_CHANNEL:
                        order_placed.set()
                    else:
                        tasks_queued.fire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: wait and listen again
            log.warning("notifications interrupted: %s", exc)
            await asyncio.sleep(RECONNECT_DELAY)
