"""Wakes long-polling claims the moment tasks are queued, and an intake the moment an order is placed.

Each replica keeps one LISTEN connection (PostgreSQL); a split or requeue here also wakes local waiters
at once, and a split here leases its first tasks to them directly. A notification wakes a few waiting claims,
not all of them: each that fills up wakes two more, so a large batch of tasks still reaches every waiting
worker, while one task costs a few claims whatever the number of workers waiting. An idle worker costs no
database work: a long-poll that finds the queue known empty (a claim here found it short, and no task was
queued since) waits without a claim, and waiting claims are not polled one by one. Instead, every
FALLBACK_POLL seconds while claims wait, one of them claims again: a lost notification costs latency, never a
task. A claim's attempt stops waiting when its worker hangs up or sends the request again (Attempts).
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import islice
from typing import NamedTuple

import psycopg

from salad.core.db import (ORDERS_CHANNEL, TASKS_CHANNEL, dead_server_timeouts, libpq_url,
                           server_keepalives_sql)

FALLBACK_POLL = 1.0  # seconds between a replica's probes of the queue while claims wait (one claim, not all)
WAKE_BATCH = 4  # waiting claims woken when tasks are queued; each that fills up wakes WAKE_MORE more
WAKE_MORE = 2
LEASED_ONLY = "running"  # an older Master's split notified of tasks it leased itself: nobody to wake
RECONNECT_DELAY = 1.0  # seconds
LISTENER = "salad-master-listener"  # the application_name of each replica's LISTEN connection: IntakeTurns
TURNS_REFRESH = 5.0  # seconds between a replica's reads of the replicas listening
HUNG_UP, RETRIED = "hung up", "retried"  # why a request's attempt stopped: see Attempts

log = logging.getLogger(__name__)


class Waiting(NamedTuple):
    """A claim waiting for tasks: for whom, how many it takes, and under which lease (None: a new one)."""

    worker: str
    max_tasks: int
    lease: str | None = None


class QueueSignal:
    """The claims waiting on this replica: a few woken when tasks are queued, or taken by a split to hand them
    its tasks directly (Intake).

    A split that leases its first tasks to the waiting claims in its own statement spares each of them a
    claim of its own after the wake-up, which, run at once in the thread pool, made the last worker wait.
    """

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future, Waiting] = {}  # oldest first
        self.fired = 0  # how many times tasks were queued: see `wait`'s `since`
        self._empty_at: int | None = None  # `fired` when a claim here last found fewer tasks than asked
        self.stopping = False  # the replica stops: no claim waits any more

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def fire(self, wake: int = WAKE_BATCH) -> None:
        """Tasks were queued: wake `wake` waiting claims (the oldest); they claim."""
        self.fired += 1
        self.wake(wake)

    def wake(self, count: int) -> None:
        """Wake `count` waiting claims without news of queued tasks (a probe, or more after a full claim)."""
        for future in list(islice(self._waiting, count)):
            del self._waiting[future]
            if not future.done():
                future.set_result([])

    def stop(self) -> None:
        """The replica stops: every waiting claim is answered now, with no task, and none waits from here on
        (its worker claims again, from another replica or once this one is back)."""
        self.stopping = True
        self.wake(len(self._waiting))

    def known_empty(self, read_at: int) -> bool:
        """Did a claim here find the queue short, with no task queued since `read_at` (`fired` then)?"""
        return self._empty_at == read_at == self.fired

    def claimed(self, leased: int, asked: int, read_at: int, woken: bool = False) -> None:
        """What a claim that read the queue at `read_at` got: short, the queue was empty then; full, more may
        be queued, so a woken claim wakes WAKE_MORE others (a split of many tasks reaches every waiter so)."""
        if not asked:
            return
        if leased < asked:
            self._empty_at = read_at
            return
        self._empty_at = None
        if woken:
            self.wake(WAKE_MORE)

    def take(self, tasks: int | None = None) -> list[tuple[asyncio.Future, Waiting]]:
        """Take waiting claims (the oldest), as many as `tasks` tasks fill (all with None), for a split to
        lease tasks to. Each is then answered with `hand`, with its tasks or none (it then claims again)."""
        taken, wanted = [], tasks
        for future, waiting in list(self._waiting.items()):
            if wanted is not None and wanted <= 0:
                break
            del self._waiting[future]
            taken.append((future, waiting))
            if wanted is not None:
                wanted -= waiting.max_tasks
        return taken

    @staticmethod
    def hand(future: asyncio.Future, leased: list) -> bool:
        """Answer a taken claim with the tasks leased to it; False when it stopped waiting meanwhile."""
        if future.done():
            return False
        future.set_result(leased)
        return True

    async def wait(self, timeout: float, worker: str, max_tasks: int, since: int | None = None,
                   gone: asyncio.Future | None = None, lease: str | None = None) -> list:
        """Wait until woken (returns []: claim) or a split leases tasks to this claim (returns them); at most
        `timeout`, or until `gone` is done (the caller hung up).

        `since`: `fired` when the caller last read the queue. Tasks queued after that read, before this wait,
        woke nobody: it then returns [] at once instead of leaving them queued until a probe.
        """
        if self.stopping or (since is not None and since != self.fired):
            return []
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting[future] = Waiting(worker, max_tasks, lease)
        expiry = loop.call_later(timeout, self._expire, future)
        if gone is not None:
            gone.add_done_callback(lambda _: self._expire(future))
        try:
            return await future
        finally:
            expiry.cancel()
            self._waiting.pop(future, None)

    def _expire(self, future: asyncio.Future) -> None:
        if self._waiting.pop(future, None) is not None:  # not taken by a split, which will answer it
            future.set_result([])


class Attempts:
    """The requests with a request id this replica is answering, by worker and request id.

    A worker sends a request again when it got no answer. If the first attempt is still here (the connection
    failed on the worker's side only, so it may yet lease tasks nobody receives), the retry stops it and
    waits for it to end before it looks for what that attempt leased (tasks.resume), so it misses none.
    """

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], tuple[asyncio.Future, asyncio.Event]] = {}

    @asynccontextmanager
    async def attempt(self, worker: str, request_id: str | None) -> AsyncIterator[asyncio.Future]:
        """One attempt of a request: yields a future set when the attempt must stop, to HUNG_UP by the
        caller when its worker hangs up, or to RETRIED here when the worker sends the request again."""
        stop = asyncio.get_running_loop().create_future()
        if request_id is None:
            yield stop
            return
        key = (worker, request_id)
        while (earlier := self._running.get(key)) is not None:
            earlier_stop, ended = earlier
            stop_attempt(earlier_stop, RETRIED)
            await ended.wait()
        ended = asyncio.Event()
        self._running[key] = (stop, ended)
        try:
            yield stop
        finally:
            del self._running[key]
            ended.set()


def stop_attempt(stop: asyncio.Future, why: str) -> None:
    """Tell a request's attempt to stop (HUNG_UP or RETRIED), unless it was told already."""
    if not stop.done():
        stop.set_result(why)


async def probe(signal: QueueSignal, interval: float = FALLBACK_POLL) -> None:
    """While claims wait, wake one every `interval`: it claims, and finds tasks whose notification was
    lost."""
    while True:
        await asyncio.sleep(interval)
        signal.wake(1)


class IntakeTurns:
    """Whose intake an order's notification wakes: one replica's, not every one's, each claiming at Shared
    (a call and a statement) where one finds the order. Replicas take turns by order id, modulo the number
    of replicas listening, in the order of their LISTEN connections' backends (read from pg_stat_activity
    every TURNS_REFRESH seconds).

    A turn is a hint, not a lease: every replica's intake still claims every SALAD_INTAKE_INTERVAL, so an
    order whose replica stopped, or that a changing view of the replicas skips, waits that long at most (a
    replica whose host vanished keeps its turns until PostgreSQL gives its connection up, after
    db.dead_peer_seconds(), and the others' next refresh).
    A replica that cannot read the others (or find itself among them) takes every turn, as before turns.
    """

    def __init__(self) -> None:
        self.replicas, self.rank = 1, 0

    def mine(self, payload: str) -> bool:
        """Whether the order of this notification is this replica's to take (an older Shared sends no id:
        then every replica's)."""
        if not (payload.isascii() and payload.isdigit()):
            return True
        return int(payload) % self.replicas == self.rank

    async def refresh(self, conn: psycopg.AsyncConnection) -> None:
        """Read the replicas listening (this connection is one of them). The ranks come from the server's
        pids, compared in SQL: behind a pooler, the client's idea of its backend pid is the pooler's."""
        try:
            cursor = await conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE pid < pg_backend_pid()),"
                " coalesce(bool_or(pid = pg_backend_pid()), false)"
                " FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                (LISTENER,))
            replicas, rank, listed = await cursor.fetchone()
        except psycopg.Error as exc:
            if conn.closed:
                raise  # the database went away: listen() reconnects
            log.warning("could not read the replicas listening, taking every order's turn: %s", exc)
            replicas, rank, listed = 1, 0, True
        self.replicas, self.rank = (replicas, rank) if listed else (1, 0)


async def listen(database_url: str, tasks_queued: QueueSignal, order_placed: asyncio.Event,
                 turns: IntakeTurns | None = None) -> None:
    """Fire `tasks_queued`, and set `order_placed` for the orders whose turn is this replica's, on their
    notifications; reconnects after database outages."""
    turns = turns or IntakeTurns()
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True,
                                                             application_name=LISTENER,
                                                             **dead_server_timeouts(database_url)) as conn:
                await conn.execute(server_keepalives_sql())  # a vanished replica's turns go to the others
                await conn.execute(f"LISTEN {TASKS_CHANNEL}")
                await conn.execute(f"LISTEN {ORDERS_CHANNEL}")
                tasks_queued.fire()  # tasks or orders may have come while we were not listening
                order_placed.set()
                while True:  # notifications that come during a refresh wait in psycopg's backlog
                    await turns.refresh(conn)
                    async for note in conn.notifies(timeout=TURNS_REFRESH):
                        if note.channel == ORDERS_CHANNEL:
                            if turns.mine(note.payload):
                                order_placed.set()
                        elif note.payload != LEASED_ONLY:
                            tasks_queued.fire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: wait and listen again
            log.warning("notifications interrupted: %s", exc)
            await asyncio.sleep(RECONNECT_DELAY)
