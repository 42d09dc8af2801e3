"""Workers seen recently, and the queue figures that operators and autoscalers read."""

import json
import threading
import time
from datetime import timedelta

from sqlalchemy import DateTime, Integer, String, delete, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from salad.core.db import autocommit, json_rows, transaction, utcnow
from salad.core.models import Task, TaskStatus, Worker
from salad.master.hand_out import Capacity
from salad.master.schemas import Stats, WorkerPublic


def beat(engine: Engine, name: str, slots: int, busy: int, prefetch: int) -> None:
    """Record that a worker is alive, with its capacity and load."""
    write_beats(engine, [dict(name=name, slots=slots, prefetch=prefetch, busy=busy, last_seen=utcnow())])


def write_beats_statement():
    """Upsert a batch of beats bound as one JSON parameter: built and compiled once, whatever the batch."""
    batch = json_rows(dict(name=String, slots=Integer, prefetch=Integer, busy=Integer, last_seen=DateTime))
    statement = postgresql.insert(Worker).from_select(
        ["name", "slots", "prefetch", "busy", "started_at", "last_seen"],
        select(batch.c.name, batch.c.slots, batch.c.prefetch, batch.c.busy, batch.c.last_seen,
               batch.c.last_seen),
    )
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[Worker.name],
        set_=dict(slots=new.slots, prefetch=new.prefetch, busy=new.busy, last_seen=new.last_seen),
    )


WRITE_BEATS = write_beats_statement()


def write_beats(engine: Engine, beats: list[dict]) -> None:
    """Record workers' beats (name, slots, prefetch, busy, last_seen; one per name) in one statement."""
    batch = json.dumps([dict(beat, last_seen=beat["last_seen"].isoformat()) for beat in beats])
    with autocommit(engine) as connection:
        connection.execute(WRITE_BEATS, dict(batch=batch))


class Beats:
    """The worker beats this replica received, written in one statement every BEAT_FLUSH seconds instead of
    a transaction each: a thousand workers beating every 5 s cost PostgreSQL 200 transactions a second.

    A worker's first beat here is written at once, so a worker is listed (and planned for) as soon as it
    says hello; later ones reach the database within BEAT_FLUSH, well within the worker TTL.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: dict[str, dict] = {}  # name -> its latest beat, not written yet
        self.known: dict[str, float] = {}  # name -> monotonic time of its last beat here
        self.lock = threading.Lock()  # a worker leaving is not written back by a flush in flight

    def first(self, name: str) -> bool:
        """Is this the first beat of `name` here (or its first for a long while)? Then write it at once."""
        return name not in self.known

    def beat(self, name: str, slots: int, busy: int, prefetch: int) -> None:
        """Note a beat, to be written by the next flush (call `first` and `beat` for a first beat instead)."""
        self.known[name] = time.monotonic()
        self.pending[name] = dict(name=name, slots=slots, prefetch=prefetch, busy=busy, last_seen=utcnow())

    def write_now(self, name: str, slots: int, busy: int, prefetch: int) -> None:
        with self.lock:
            beat(self.engine, name, slots, busy, prefetch)
        self.known[name] = time.monotonic()

    def forget(self, name: str) -> bool:
        """A worker leaves: drop its pending beat and its row."""
        with self.lock:
            self.pending.pop(name, None)
            self.known.pop(name, None)
            return forget(self.engine, name)

    def flush(self, forget_after: float) -> int:
        """Write the pending beats; forget the workers not heard of for `forget_after` seconds."""
        with self.lock:  # a beat noted just as the batch is swapped may miss it: the next one is there
            batch, self.pending = self.pending, {}
            if batch:
                write_beats(self.engine, list(batch.values()))
        horizon = time.monotonic() - forget_after
        for name in [name for name, seen in self.known.items() if seen < horizon]:
            self.known.pop(name, None)
        return len(batch)


def forget(engine: Engine, name: str) -> bool:
    with transaction(engine) as session:
        return session.execute(delete(Worker).where(Worker.name == name)).rowcount > 0


def list_workers(engine: Engine, ttl_seconds: float, live_only: bool = False) -> list[WorkerPublic]:
    since = utcnow() - timedelta(seconds=ttl_seconds)
    query = select(Worker).order_by(Worker.name)
    if live_only:
        query = query.where(Worker.last_seen >= since)
    with transaction(engine) as session:
        return [
            WorkerPublic(name=w.name, slots=w.slots, prefetch=w.prefetch, busy=w.busy,
                         started_at=w.started_at, last_seen=w.last_seen, live=w.last_seen >= since)
            for w in session.scalars(query)
        ]


def capacities(engine: Engine, ttl_seconds: float) -> list[Capacity]:
    """The live workers' slots and prefetch, by name: what an order's hand-out is planned for. Two columns
    in one statement: read as whole rows and models, a thousand workers cost Master 10 ms of CPU."""
    since = utcnow() - timedelta(seconds=ttl_seconds)
    query = select(Worker.slots, Worker.prefetch).where(Worker.last_seen >= since).order_by(Worker.name)
    with autocommit(engine) as connection:
        return [Capacity(slots, prefetch) for slots, prefetch in connection.execute(query)]


def stats(engine: Engine, ttl_seconds: float) -> Stats:
    """Queue depth, running tasks, live workers: a few index scans, cheap enough for every scrape."""
    now = utcnow()
    with transaction(engine) as session:
        queued, oldest = session.execute(
            select(func.count(), func.min(Task.queued_at)).where(Task.status == TaskStatus.QUEUED)
        ).one()
        running = session.scalar(select(func.count()).where(Task.status == TaskStatus.RUNNING))
        live = session.scalar(select(func.count()).select_from(Worker)
                              .where(Worker.last_seen >= now - timedelta(seconds=ttl_seconds)))
    age = (now - oldest).total_seconds() if oldest else 0.0
    return Stats(queued=queued, running=running, live_workers=live, oldest_queued_age_seconds=max(0.0, age))
