"""What the task life cycle (master/tasks.py) counts and times: the metrics are defined in master/metrics.py,
observed here, from the rows the life cycle's statements return."""

from datetime import datetime

from salad.core.metrics import observe_by_label
from salad.core.models import OrderStatus, TaskStatus
from salad.master.metrics import (
    LEASE_EXPIRIES,
    ORDERS_FINISHED_BY_MASTER,
    TASK_EXECUTION,
    TASK_LATENCY,
    TASK_QUEUE_WAIT,
    TASK_RETRIES,
    TASKS_FINISHED,
)


def seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def leased(rows, now: datetime) -> None:
    """Tasks a claim leased (rows with `fruit` and `queued_at`): how long each waited in the queue."""
    observe_by_label(TASK_QUEUE_WAIT, ((row.fruit, seconds_between(row.queued_at, now)) for row in rows))


def succeeded(rows, now: datetime) -> None:
    """Recorded successes (rows with `fruit`, `claimed_at`, `created_at`): how long each ran, and since its
    creation."""
    observe_by_label(TASK_EXECUTION, ((row.fruit, seconds_between(row.claimed_at, now)) for row in rows))
    observe_by_label(TASK_LATENCY, ((row.fruit, seconds_between(row.created_at, now)) for row in rows))
    TASKS_FINISHED.labels(TaskStatus.SUCCEEDED).inc(len(rows))


def failed() -> None:
    """A task failed for good (its attempts are spent)."""
    TASKS_FINISHED.labels(TaskStatus.FAILED).inc()


def retried(reason: str) -> None:
    """A task queued again: lease_expired, released, error or timeout."""
    TASK_RETRIES.labels(reason).inc()


def lease_expired() -> None:
    LEASE_EXPIRIES.inc()


def orders_finished(status: OrderStatus, count: int = 1) -> None:
    """Orders whose last task this Master recorded: completed, or failed."""
    ORDERS_FINISHED_BY_MASTER.labels(status).inc(count)
