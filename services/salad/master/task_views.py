"""Read-only views of tasks for operators: which failed, why, and on which workers."""

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.engine import Engine

from salad.contracts.operators import FailedAttempt, TaskPublic
from salad.core.db import transaction
from salad.core.models import Task, TaskFailure


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
