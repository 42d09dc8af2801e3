"""Read-only views of tasks: for operators (which failed, why, on which workers), and for Shared (what it shows
of an order's fruits and of the live workers: Shared reads no table of Master's)."""

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from salad.contracts.internal import OrderFruits, Progress
from salad.contracts.operators import FailedAttempt, TaskPublic
from salad.contracts.orders import FruitState, WorkerView
from salad.core.db import snapshot, transaction, utcnow
from salad.core.models import Task, TaskFailure
from salad.master.sql import SQL


def list_tasks(engine: Engine, status: str | None, order_id: int | None, limit: int) -> list[TaskPublic]:
    query = select(Task).order_by(Task.id).limit(limit)
    if status:
        query = query.where(Task.status == status)
    if order_id is not None:
        query = query.where(Task.order_id == order_id)
    with transaction(engine) as session:
        tasks = list(session.scalars(query))
        failures = defaultdict(list)
        for f in session.scalars(select(TaskFailure).where(TaskFailure.task_id.in_([t.id for t in tasks]))
                                 .order_by(TaskFailure.id)):
            failures[f.task_id].append(FailedAttempt(attempt=f.attempt, worker=f.worker, error=f.error,
                                                     failed_at=f.failed_at))
    return [
        TaskPublic(id=t.id, order_id=t.order_id, position=t.position, fruit=t.fruit,
                   execution_time=t.execution_time, status=t.status, attempts=t.attempts,
                   max_attempts=t.max_attempts, worker=t.worker, error=t.error, failures=failures[t.id])
        for t in tasks
    ]


def order_of(engine: Engine, task_id: int) -> int | None:
    with transaction(engine) as session:
        return session.scalar(select(Task.order_id).where(Task.id == task_id))


def progress(engine: Engine, order_ids: list[int], with_workers: bool, ttl_seconds: float) -> Progress:
    """The fruits of `order_ids` and, `with_workers`, the live workers with their load, in one snapshot."""
    fruits: dict[int, list[FruitState]] = {order_id: [] for order_id in order_ids}
    with snapshot(engine) as session:
        for row in session.execute(SQL.order_fruits, dict(ids=order_ids)):
            fruits[row.order_id].append(FruitState(position=row.position, fruit=row.fruit, status=row.status,
                                                   worker=row.worker, attempts=row.attempts))
        workers = None
        if with_workers:
            since = utcnow() - timedelta(seconds=ttl_seconds)
            workers = [WorkerView(name=row.name, slots=row.slots, busy=row.busy)
                       for row in session.execute(SQL.worker_loads, dict(since=since))]
    return Progress(orders=[OrderFruits(order_id=order_id, fruits=states) for order_id, states in fruits.items()],
                    workers=workers)
