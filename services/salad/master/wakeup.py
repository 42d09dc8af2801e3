"""Wakes long-polling claims the moment tasks are queued, and the intake the moment an order is placed.

Each replica keeps one LISTEN connection (PostgreSQL); a split or requeue here also wakes local waiters
at once, and a split here leases its first tasks to them directly. Waiters still re-check every
FALLBACK_POLL seconds (the intake every intake_interval), so a lost notification costs latency, never a task.
"""

import asyncio
import logging
from typing import NamedTuple

import psycopg

from salad.core.db import ORDERS_CHANNEL, TASKS_CHANNEL, libpq_url

FALLBACK_POLL = 1.0  # seconds
RECONNECT_DELAY = 1.0  # seconds

log = logging.getLogger(__name__)


class Waiting(NamedTuple):
    """A claim waiting for tasks: for whom, and how many it takes."""

    worker: str
    max_tasks: int


class QueueSignal:
    """The claims waiting on this replica: woken when tasks are queued, or taken by a split to hand them its
    tasks directly (Intake).

    A split that leases its first tasks to the waiting claims in its own statement spares each of them a
    claim of its own after the wake-up: on the 2-core benchmark machine those claims, run at once in the
    thread pool, answered the last worker 10-15 ms after the split.
    """

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future, Waiting] = {}
        self.fired = 0  # how many times tasks were queued: see `wait`'s `since`

    def fire(self) -> None:
        """Wake every waiting claim: it claims again."""
        self.fired += 1
        waiting, self._waiting = self._waiting, {}
        for future in waiting:
            if not future.done():
                future.set_result([])

    def take(self) -> list[tuple[asyncio.Future, Waiting]]:
        """Take the waiting claims, for a split to lease tasks to. Each is then answered with `hand`, with its
        tasks or none (it then claims again)."""
        waiting, self._waiting = self._waiting, {}
        return list(waiting.items())

    @staticmethod
    def hand(future: asyncio.Future, leased: list) -> bool:
        """Answer a taken claim with the tasks leased to it; False when it stopped waiting meanwhile."""
        if future.done():
            return False
        future.set_result(leased)
        return True

    async def wait(self, timeout: float, worker: str, max_tasks: int, since: int | None = None) -> list:
        """Wait until tasks are queued (returns []: claim them) or a split leases some to this claim (returns
        them); at most `timeout`, and FALLBACK_POLL.

        `since`: `fired` when the caller last read the queue. Tasks queued after that read, before this wait,
        woke nobody: it then returns [] at once instead of leaving them queued until FALLBACK_POLL.
        """
        if since is not None and since != self.fired:
            return []
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting[future] = Waiting(worker, max_tasks)
        expiry = loop.call_later(min(timeout, FALLBACK_POLL), self._expire, future)
        try:
            return await future
        finally:
            expiry.cancel()
            self._waiting.pop(future, None)

    def _expire(self, future: asyncio.Future) -> None:
        if self._waiting.pop(future, None) is not None:  # not taken by a split, which will answer it
            future.set_result([])


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
