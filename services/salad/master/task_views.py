"""Read-only views of tasks: for operators (which failed, why, on which workers), and for Shared (what it shows
of an order's fruits and of the live workers: Shared reads no table of Master's)."""

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from salad.contracts.internal import OrderFruits, Progress
from salad.contracts.operators import FailedAttempt, TaskPublic
from salad.contracts.orders import FruitState, WorkerView
from salad.core.db import snapshot, transaction, utcnow
from salad.core.models import Task, TaskFailure, TaskStatus
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
                   max_attempts=t.max_attempts, worker=t.worker, error=t.error, failures=failures[t.id],
                   queued_at=t.queued_at, claimed_at=t.claimed_at, finished_at=t.finished_at)
        for t in tasks
    ]


def order_of(engine: Engine, task_id: int) -> int | None:
    with transaction(engine) as session:
        return session.scalar(select(Task.order_id).where(Task.id == task_id))


def silence(now: datetime, last_heard: datetime | None, allowed: float) -> int | None:
    """Whole seconds since `last_heard` when more than `allowed` passed (None while in time): the page says
    "not heard from for 12 s" only then, and a healthy dashboard does not change every second."""
    if last_heard is None:
        return None
    silent = (now - last_heard).total_seconds()
    return int(silent) if silent > allowed else None


def progress(engine: Engine, order_ids: list[int], with_workers: bool, ttl_seconds: float,
             lease_seconds: float) -> Progress:
    """The fruits of `order_ids` and, `with_workers`, the live workers with their load, in one snapshot.

    A running fruit whose lease was not renewed for half the lease, and a worker that did not check in for
    half its time to live, say for how long (`silent_for`): a worker killed or hung shows as such at once,
    not only once Master retries its fruits, and even when a new process took its name meanwhile."""
    fruits: dict[int, list[FruitState]] = {order_id: [] for order_id in order_ids}
    lease = timedelta(seconds=lease_seconds)
    with snapshot(engine) as session:
        now = utcnow()
        for row in session.execute(SQL.order_fruits, dict(ids=order_ids)):
            running = row.status == TaskStatus.RUNNING and row.lease_expires_at is not None
            renewed = row.lease_expires_at - lease if running else None  # its worker's last heartbeat
            fruits[row.order_id].append(FruitState(position=row.position, fruit=row.fruit, status=row.status,
                                                   worker=row.worker, attempts=row.attempts,
                                                   silent_for=silence(now, renewed, lease_seconds / 2)))
        workers = None
        if with_workers:
            since = now - timedelta(seconds=ttl_seconds)
            workers = [WorkerView(name=row.name, slots=row.slots, busy=row.busy,
                                  silent_for=silence(now, row.last_seen, ttl_seconds / 2))
                       for row in session.execute(SQL.worker_loads, dict(since=since))]
    return Progress(orders=[OrderFruits(order_id=order_id, fruits=states) for order_id, states in fruits.items()],
                    workers=workers)
