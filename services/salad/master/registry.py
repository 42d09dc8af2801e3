"""Workers seen recently, and the queue figures that operators and autoscalers read (master/queries.sql)."""

from datetime import timedelta

from sqlalchemy.engine import Engine

from salad.contracts.operators import Stats, WorkerPublic
from salad.core.db import transaction, utcnow
from salad.master.hand_out import Capacity
from salad.master.sql import SQL


def check_in(engine: Engine, name: str, slots: int, busy: int, prefetch: int) -> None:
    """Record that a worker is alive, with its capacity and load (not a task's lease: tasks.heartbeat_lease)."""
    now = utcnow()
    with transaction(engine) as session:
        session.execute(SQL.check_in_worker, dict(name=name, slots=slots, prefetch=prefetch, busy=busy, now=now))


def forget(engine: Engine, name: str) -> bool:
    with transaction(engine) as session:
        return session.execute(SQL.forget_worker, dict(name=name)).rowcount > 0


def list_workers(engine: Engine, ttl_seconds: float, live_only: bool = False) -> list[WorkerPublic]:
    since = utcnow() - timedelta(seconds=ttl_seconds)
    with transaction(engine) as session:
        rows = session.execute(SQL.workers, dict(since=since, live_only=live_only)).all()
    return [WorkerPublic.model_validate(row._mapping) for row in rows]


def capacities(engine: Engine, ttl_seconds: float) -> list[Capacity]:
    """The live workers' slots and prefetch, by name: what an order's hand-out is planned for."""
    return [Capacity(w.slots, w.prefetch) for w in list_workers(engine, ttl_seconds, live_only=True)]


def stats(engine: Engine, ttl_seconds: float) -> Stats:
    """Queue depth, running tasks, live workers: a few index scans, cheap enough for every scrape."""
    now = utcnow()
    with transaction(engine) as session:
        row = session.execute(SQL.queue_stats, dict(since=now - timedelta(seconds=ttl_seconds))).one()
    age = (now - row.oldest_queued_at).total_seconds() if row.oldest_queued_at else 0.0
    return Stats(queued=row.queued, running=row.running, live_workers=row.live_workers,
                 oldest_queued_age_seconds=max(0.0, age))
