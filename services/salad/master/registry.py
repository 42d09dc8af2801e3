"""Workers seen recently, and the queue figures that operators and autoscalers read (master/queries.sql)."""

import json
import threading
import time
from datetime import timedelta

from sqlalchemy.engine import Engine

from salad.contracts.operators import Stats, WorkerPublic
from salad.core.db import autocommit, transaction, utcnow
from salad.master.hand_out import Capacity
from salad.master.sql import SQL


def check_in(engine: Engine, name: str, slots: int, busy: int, prefetch: int) -> None:
    """Record that a worker is alive, with its capacity and load (not a task's lease: tasks.heartbeat_lease)."""
    write_check_ins(engine, [dict(name=name, slots=slots, prefetch=prefetch, busy=busy, last_seen=utcnow())])


def write_check_ins(engine: Engine, check_ins: list[dict]) -> None:
    """Record workers' check-ins (name, slots, prefetch, busy, last_seen; one per name) in one statement."""
    batch = json.dumps([dict(c, last_seen=c["last_seen"].isoformat()) for c in check_ins])
    with autocommit(engine) as connection:
        connection.execute(SQL.check_in_workers, dict(batch=batch))


class CheckIns:
    """The worker check-ins this replica received, written in one statement every flush instead of a
    transaction each: with a thousand workers checking in every few seconds, a transaction each is what
    PostgreSQL spends most of its time on while the fleet is idle.

    A worker's first check-in here is written at once, so a worker is listed (and planned for) as soon as it
    says hello; later ones reach the database within a flush, well within the worker TTL.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: dict[str, dict] = {}  # name -> its latest check-in, not written yet
        self.known: dict[str, float] = {}  # name -> monotonic time of its last check-in here
        self.lock = threading.Lock()  # a worker leaving is not written back by a flush in flight

    def first(self, name: str) -> bool:
        """Is this `name`'s first check-in here (or its first for a long while)? Then write it at once."""
        return name not in self.known

    def note(self, name: str, slots: int, busy: int, prefetch: int) -> None:
        """Note a check-in, written by the next flush (a first check-in goes through `write_now` instead)."""
        self.known[name] = time.monotonic()
        self.pending[name] = dict(name=name, slots=slots, prefetch=prefetch, busy=busy, last_seen=utcnow())

    def write_now(self, name: str, slots: int, busy: int, prefetch: int) -> None:
        with self.lock:
            check_in(self.engine, name, slots, busy, prefetch)
        self.known[name] = time.monotonic()

    def forget(self, name: str) -> bool:
        """A worker leaves: drop its pending check-in and its row."""
        with self.lock:
            self.pending.pop(name, None)
            self.known.pop(name, None)
            return forget(self.engine, name)

    def flush(self, forget_after: float) -> int:
        """Write the pending check-ins; forget the workers not heard of for `forget_after` seconds."""
        with self.lock:  # a check-in noted just as the batch is swapped may miss it: the next one is there
            batch, self.pending = self.pending, {}
            if batch:
                write_check_ins(self.engine, list(batch.values()))
        horizon = time.monotonic() - forget_after
        for name in [name for name, seen in self.known.items() if seen < horizon]:
            self.known.pop(name, None)
        return len(batch)


def forget(engine: Engine, name: str) -> bool:
    with transaction(engine) as session:
        return session.execute(SQL.forget_worker, dict(name=name)).rowcount > 0


def list_workers(engine: Engine, ttl_seconds: float, live_only: bool = False) -> list[WorkerPublic]:
    since = utcnow() - timedelta(seconds=ttl_seconds)
    with transaction(engine) as session:
        rows = session.execute(SQL.workers, dict(since=since, live_only=live_only)).all()
    return [WorkerPublic.model_validate(row._mapping) for row in rows]


def capacities(engine: Engine, ttl_seconds: float) -> list[Capacity]:
    """The live workers' slots and prefetch, by name: what an order's hand-out is planned for (two columns,
    not whole rows read as models: this runs for every order)."""
    since = utcnow() - timedelta(seconds=ttl_seconds)
    with autocommit(engine) as connection:
        return [Capacity(slots, prefetch) for slots, prefetch in connection.execute(SQL.live_capacities,
                                                                                     dict(since=since))]


def stats(engine: Engine, ttl_seconds: float) -> Stats:
    """Queue depth, running tasks, live workers and their slots: a few index scans, cheap enough for every
    scrape."""
    now = utcnow()
    with transaction(engine) as session:
        row = session.execute(SQL.queue_stats, dict(since=now - timedelta(seconds=ttl_seconds))).one()
    age = (now - row.oldest_queued_at).total_seconds() if row.oldest_queued_at else 0.0
    return Stats(queued=row.queued, running=row.running, live_workers=row.live_workers,
                 oldest_queued_age_seconds=max(0.0, age), slots=row.slots)
