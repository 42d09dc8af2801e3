"""Orders as Shared stores them: create, read, hand to Master, finish. Every function is one transaction, of
named statements (shared/queries.sql) run on the connection: on the path of every order, the ORM's objects
and statements built per call cost Shared more CPU than PostgreSQL spends running them."""

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from salad.contracts.internal import IntakeOrder, OrderReport
from salad.contracts.orders import FruitCounts, FruitState, OrderPublic
from salad.core.db import autocommit, snapshot, transaction, utcnow
from salad.core.fields import MAX_ID
from salad.core.metrics import ORDERS_CREATED, ORDERS_FINISHED, SALAD_COMPLETION
from salad.core.models import Order, OrderStatus, Task, TaskStatus
from salad.shared.sql import SQL

FINAL = (OrderStatus.COMPLETED, OrderStatus.FAILED)
FIRST_PAGE = MAX_ID + 1  # `before` of the first page: every id is below it
FRUIT_STATES = TypeAdapter(list[FruitState])
COUNT_OF_TASK_STATUS = {
    TaskStatus.QUEUED: "queued", TaskStatus.RUNNING: "running",
    TaskStatus.SUCCEEDED: "done", TaskStatus.FAILED: "failed",
}


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different order."""


def request_hash(fruits: list[str], priority: int) -> str:
    return hashlib.sha256(json.dumps([fruits, priority]).encode()).hexdigest()


def create_order(
    engine: Engine, fruits: list[str], priority: int = 0, idempotency_key: str | None = None
) -> tuple[Row, bool]:
    """Store a new order; with a key already used for the same fruits, return that order instead.

    Returns (the order's row, created).
    """
    digest = request_hash(fruits, priority) if idempotency_key else None
    try:
        with autocommit(engine) as connection:
            order = connection.execute(SQL.insert_order, dict(
                fruits=json.dumps(fruits), priority=priority, idempotency_key=idempotency_key,
                request_hash=digest, created_at=utcnow())).one()
        ORDERS_CREATED.inc()
        return order, True
    except IntegrityError:
        if idempotency_key is None:
            raise
    with autocommit(engine) as connection:
        order = connection.execute(SQL.order_by_idempotency_key, dict(idempotency_key=idempotency_key)).one()
    if order.request_hash != digest:
        raise IdempotencyConflict(idempotency_key)
    return order, False


def task_counts(session, order_ids: list[int]) -> dict[int, FruitCounts]:
    """Fruits per state for each order (read from Master's tasks table, never written here)."""
    counts: dict[int, FruitCounts] = defaultdict(FruitCounts)
    if not order_ids:
        return counts
    rows = session.execute(
        select(Task.order_id, Task.status, func.count())
        .where(Task.order_id.in_(order_ids)).group_by(Task.order_id, Task.status)
    )
    for order_id, status, n in rows:
        setattr(counts[order_id], COUNT_OF_TASK_STATUS[status], n)
    return counts


def count_states(states: Iterable[str]) -> FruitCounts:
    """Fruits per state, from each fruit's state as counted: queued, running, done or failed."""
    return FruitCounts(**Counter(states))


def counts_without_tasks(order: Order) -> FruitCounts:
    """An order with no task rows: not split by a Master yet, or finished and its tasks pruned (retention)."""
    if order.status == OrderStatus.COMPLETED:
        return FruitCounts(done=len(order.fruits))
    if order.status == OrderStatus.FAILED:
        return FruitCounts()  # which fruits failed is no longer known
    return FruitCounts(queued=len(order.fruits))


def to_public(order: Order | Row, counts: FruitCounts | None,
              fruits: list[FruitState] | None = None) -> OrderPublic:
    if counts is None or sum(counts.model_dump().values()) == 0:
        counts = counts_without_tasks(order)
    return OrderPublic(
        id=order.id, status=order.status, fruits=order.fruits, priority=order.priority, counts=counts,
        created_at=order.created_at, accepted_at=order.accepted_at, completed_at=order.completed_at,
        preparation_time=order.preparation_time, failure_reason=order.failure_reason, tasks=fruits,
    )


def as_placed(order: Row) -> OrderPublic:
    """An order before any Master took it: every fruit waits. (Its fruits are validated in one call to
    pydantic-core: a model per fruit cost 1.7x as much.)"""
    fruits = FRUIT_STATES.validate_python(
        [{"position": i, "fruit": f, "status": TaskStatus.QUEUED} for i, f in enumerate(order.fruits)])
    return to_public(order, None, fruits)


def get_order(engine: Engine, order_id: int, with_fruits: bool = True) -> OrderPublic | None:
    """The order with its counts and, `with_fruits`, each fruit's state (read as plain rows: an order may
    hold many fruits)."""
    with snapshot(engine) as session:
        order = session.execute(SQL.order, dict(order_id=order_id)).one_or_none()
        if order is None:
            return None
        if not with_fruits:
            return to_public(order, task_counts(session, [order_id]).get(order_id))
        rows = session.execute(
            select(Task.position, Task.fruit, Task.status, Task.worker, Task.attempts)
            .where(Task.order_id == order_id).order_by(Task.position)
        ).all()
    if not rows:  # not split by a Master yet, or pruned after it finished
        return to_public(order, None) if order.status in FINAL else as_placed(order)
    fruits = [FruitState(position=r.position, fruit=r.fruit, status=r.status, worker=r.worker,
                         attempts=r.attempts) for r in rows]
    return to_public(order, count_states(COUNT_OF_TASK_STATUS[f.status] for f in fruits), fruits)


def list_orders(engine: Engine, status: str | None, limit: int, before: int | None) -> list[OrderPublic]:
    """Newest first; `before` is the id after which the page starts (keyset pagination)."""
    page = dict(limit=limit, before=before or FIRST_PAGE, status=status)
    with snapshot(engine) as session:
        orders = session.execute(SQL.orders_page_in_status if status else SQL.orders_page, page).all()
        counts = task_counts(session, [o.id for o in orders])
        return [to_public(o, counts.get(o.id)) for o in orders]


def claim_for_intake(engine: Engine, limit: int, lease_seconds: float) -> list[IntakeOrder]:
    """Lease pending orders to a Master; an order not confirmed in time is handed out again. One statement,
    committing by itself: it is on the path from a salad's order to its first fruit."""
    now = utcnow()
    with autocommit(engine) as connection:
        rows = connection.execute(SQL.intake_claim, dict(now=now, limit=limit,
                                                         until=now + timedelta(seconds=lease_seconds))).all()
    orders = [IntakeOrder(id=r.id, fruits=r.fruits, priority=r.priority, created_at=r.created_at) for r in rows]
    return sorted(orders, key=lambda o: (-o.priority, o.id))


def accept(engine: Engine, order_ids: list[int]) -> dict[int, str]:
    """Master has split these orders into tasks. Idempotent. Returns each known order's status.

    Master confirms a moment after the split, so a quick order may already be reported finished: it keeps
    its status and gets an accepted_at no later than its completion. One statement, committing by itself."""
    with autocommit(engine) as connection:
        return dict(connection.execute(SQL.accept, dict(ids=order_ids, now=utcnow())).all())


def apply_reports(engine: Engine, reports: list[OrderReport]) -> dict[int, str]:
    """Apply Master's reports of state changes, each once and only if newer than the last one applied.

    Returns the status of each known order after them."""
    statuses: dict[int, str] = {}
    finished: list[OrderReport] = []
    with transaction(engine) as session:
        connection = session.connection()
        for report in sorted(reports, key=lambda r: (r.order_id, r.version)):  # orders locked in id order
            values = report.model_dump()
            changed = connection.execute(SQL.apply_report, values).scalar()
            status = changed or connection.execute(SQL.order_status, values).scalar()
            if status is not None:
                statuses[report.order_id] = status
            if changed and report.status in FINAL:
                finished.append(report)
    for report in finished:
        ORDERS_FINISHED.labels(report.status).inc()
        if report.status == OrderStatus.COMPLETED and report.preparation_time is not None:
            SALAD_COMPLETION.observe(report.preparation_time)
    return statuses


def pending_fruits(engine: Engine) -> list[str]:
    """Fruits of orders no Master has taken yet (what the seed's GET /get_tasks_to_do/ lists)."""
    with transaction(engine) as session:
        return [fruit for (fruits,) in session.execute(SQL.pending_fruits) for fruit in fruits]


def count_by_status(engine: Engine) -> dict[str, int]:
    with transaction(engine) as session:
        return dict(session.execute(SQL.orders_by_status).all())


def prune_finished(engine: Engine, older_than: datetime, batch: int) -> int:
    """Delete up to `batch` orders finished before `older_than` (retention). Returns how many."""
    with transaction(engine) as session:
        return session.execute(SQL.prune_orders, dict(older_than=older_than, batch=batch)).rowcount
