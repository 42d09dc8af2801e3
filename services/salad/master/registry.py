"""Workers seen recently, and the queue figures that operators and autoscalers read."""

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from salad.core.db import transaction, utcnow
from salad.core.models import Task, TaskStatus, Worker
from salad.master.hand_out import Capacity
from salad.master.schemas import Stats, WorkerPublic


def beat(engine: Engine, name: str, slots: int, busy: int, prefetch: int) -> None:
    """Record that a worker is alive, with its capacity and load."""
    now = utcnow()
    statement = postgresql.insert(Worker).values(
        name=name, slots=slots, prefetch=prefetch, busy=busy, started_at=now, last_seen=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[Worker.name], set_=dict(slots=slots, prefetch=prefetch, busy=busy, last_seen=now)
    )
    with transaction(engine) as session:
        session.execute(statement)


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
    """The live workers' slots and prefetch, by name: what an order's hand-out is planned for."""
    return [Capacity(w.slots, w.prefetch) for w in list_workers(engine, ttl_seconds, live_only=True)]


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
