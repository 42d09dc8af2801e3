"""Wakes long-polling claims the moment tasks are queued, on this replica or any other.

Each replica keeps one LISTEN connection (PostgreSQL); a split or requeue here also wakes local waiters
at once. Waiters still re-check every FALLBACK_POLL seconds, so a lost notification costs latency, never
a task.
"""

import asyncio
import logging

import psycopg

from salad.master.tasks import NOTIFY_CHANNEL

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
        try:
            await asyncio.wait_for(self._event.wait(), timeout=min(timeout, FALLBACK_POLL))
        except TimeoutError:
            pass


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


async def listen(database_url: str, signal: QueueSignal) -> None:
    """Fire `signal` on every NOTIFY of the tasks channel; reconnects after database outages."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                signal.fire()  # tasks may have been queued while we were not listening
                async for _ in conn.notifies():
                    signal.fire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: wait and listen again
            log.warning("task notifications interrupted: %s", exc)
            await asyncio.sleep(RECONNECT_DELAY)
