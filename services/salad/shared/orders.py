"""Orders as Shared stores them: create, read, hand to Master, finish. Every function is one transaction, of
named statements (shared/queries.sql) run on the connection: on the path of every order, the ORM's objects
and statements built per call cost Shared more CPU than PostgreSQL spends running them.

A statement that changes an order's status stands alone in its transaction: the trigger counting finished
orders (migration 0009) then locks the one `order_totals` row last, so two such transactions cannot
deadlock on it."""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import TypeAdapter
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from salad.contracts.internal import IntakeOrder, OrderProgress, OrderReport
from salad.contracts.operators import TaskPublic
from salad.contracts.orders import Attempt, FruitCounts, FruitState, FruitStory, OrderPublic, OrderStory
from salad.core.db import autocommit, transaction, utcnow
from salad.core.fields import MAX_ID
from salad.core.models import OrderStatus, TaskStatus
from salad.shared.master_reads import MasterReads
from salad.shared.metrics import ORDERS_CREATED, ORDERS_FINISHED, SALAD_COMPLETION
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


def count_states(states: Iterable[str]) -> FruitCounts:
    """Fruits per state, from each fruit's state as counted: queued, running, done or failed."""
    return FruitCounts(**Counter(states))


def reported_counts(order: Row) -> FruitCounts:
    """The order's fruits per state as Shared knows them without asking Master: all done once completed, else
    Master's latest progress report, else what the status tells (none taken yet: every fruit waits)."""
    if order.status == OrderStatus.COMPLETED:
        return FruitCounts(done=len(order.fruits))
    if order.counts is not None:
        return FruitCounts(**order.counts)
    if order.status == OrderStatus.FAILED:
        return FruitCounts()  # no report came: which fruits failed is not known here
    return FruitCounts(queued=len(order.fruits))


def to_public(order: Row, counts: FruitCounts | None = None, fruits: list[FruitState] | None = None,
              unavailable: bool = False) -> OrderPublic:
    """The order as answered: `counts` from its fruits when Master told them, else as reported."""
    return OrderPublic(
        id=order.id, status=order.status, fruits=order.fruits, priority=order.priority,
        counts=reported_counts(order) if counts is None else counts, created_at=order.created_at,
        accepted_at=order.accepted_at, completed_at=order.completed_at, preparation_time=order.preparation_time,
        failure_reason=order.failure_reason, tasks=fruits, tasks_unavailable=unavailable,
    )


def as_placed(order: Row) -> OrderPublic:
    """An order before any Master took it: every fruit waits. (Its fruits are validated in one call to
    pydantic-core, not a model per fruit.)"""
    fruits = FRUIT_STATES.validate_python(
        [{"position": i, "fruit": f, "status": TaskStatus.QUEUED} for i, f in enumerate(order.fruits)])
    return to_public(order, FruitCounts(queued=len(order.fruits)), fruits)


def read(engine: Engine, order_id: int) -> Row | None:
    """The order as Shared stores it, or None."""
    with autocommit(engine) as connection:
        return connection.execute(SQL.order, dict(order_id=order_id)).one_or_none()


def get_order(engine: Engine, order_id: int, master: MasterReads | None) -> OrderPublic | None:
    """The order with its counts and each fruit's state, read from Master; without Master (None, or
    unreachable), the order as Shared stores it, its fruits marked unavailable."""
    order = read(engine, order_id)
    if order is None:
        return None
    found = master.progress([order_id]) if master is not None else None
    if found is None:
        return to_public(order, unavailable=True)
    fruits = found.orders[0].fruits
    if not fruits:  # not split by a Master yet, or its tasks pruned after it finished
        return to_public(order) if order.status in FINAL else as_placed(order)
    return to_public(order, count_states(COUNT_OF_TASK_STATUS[f.status] for f in fruits), fruits)


def story(engine: Engine, order_id: int, master: MasterReads | None) -> OrderStory | None:
    """The order and each fruit's story (times, worker, every failed attempt), read from Master; without
    Master, the order as Shared stores it and no fruit, `fruits_unavailable` set."""
    order = read(engine, order_id)
    if order is None:
        return None
    tasks = master.tasks(order_id) if master is not None else None
    fruits = [fruit_story(task) for task in sorted(tasks or [], key=lambda t: t.position)]
    counts = count_states(f.state for f in fruits) if fruits else None
    return OrderStory(order=to_public(order, counts), fruits=fruits, fruits_unavailable=tasks is None)


def fruit_story(task: TaskPublic) -> FruitStory:
    """A task as the page tells it: a queued fruit has not started (its `claimed_at` is an earlier attempt's),
    and only a failed one has an error (a retried one keeps its last)."""
    state = COUNT_OF_TASK_STATUS[task.status]
    return FruitStory(
        task_id=task.id, position=task.position, fruit=task.fruit, state=state, worker=task.worker,
        attempts=task.attempts, max_attempts=task.max_attempts, queued_at=task.queued_at,
        started_at=None if state == "queued" else task.claimed_at, finished_at=task.finished_at,
        error=task.error if state == "failed" else None,
        failures=[Attempt.model_validate(f.model_dump()) for f in task.failures])


def list_orders(engine: Engine, status: str | None, limit: int, before: int | None,
                fruit: str | None = None) -> list[OrderPublic]:
    """Newest first, those holding `fruit` when given; `before` is the id after which the page starts (keyset
    pagination). Their counts are Master's latest reports: a page costs no call to Master."""
    page = dict(limit=limit, before=before or FIRST_PAGE, status=status, fruit=fruit)
    statement = SQL.orders_page_with_fruit if fruit else SQL.orders_page_in_status if status else SQL.orders_page
    with autocommit(engine) as connection:
        orders = connection.execute(statement, page).all()
    return [to_public(order) for order in orders]


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

    Master confirms its orders split in the last SALAD_INTAKE_INTERVAL, so a quick order may already be
    reported finished (its report confirmed it): it keeps its status and gets an accepted_at no later than
    its completion. One statement, committing by itself."""
    with autocommit(engine) as connection:
        return dict(connection.execute(SQL.accept, dict(ids=order_ids, now=utcnow())).all())


def apply_reports(engine: Engine, reports: list[OrderReport],
                  progress: Sequence[OrderProgress] = ()) -> dict[int, str]:
    """Apply Master's reports of state changes, each once and only if newer than the last one applied, and its
    progress reports (fruit counts), each only if counted later than the counts the order holds: one
    statement, committing by itself (SQL.apply_reports).

    Returns the status of each known order of `reports` after them."""
    batch = dict(reports=json.dumps([r.model_dump(mode="json") for r in reports]),
                 progress=json.dumps([p.model_dump(mode="json") for p in progress]))
    with autocommit(engine) as connection:
        rows = connection.execute(SQL.apply_reports, batch).all()
    version_before = {row.id: row.version_before for row in rows}
    for report in {(r.order_id, r.version): r for r in reports}.values():  # each report once, if it was new
        if report.order_id in version_before and report.version > version_before[report.order_id]:
            count_finished(report)
    return {row.id: row.status for row in rows if row.reported}


def count_finished(report: OrderReport) -> None:
    """The metrics of an order Master reports finished."""
    if report.status not in FINAL:
        return
    ORDERS_FINISHED.labels(report.status).inc()
    if report.status == OrderStatus.COMPLETED and report.preparation_time is not None:
        SALAD_COMPLETION.observe(report.preparation_time)


def pending_fruits(engine: Engine) -> list[str]:
    """Fruits of orders no Master has taken yet (what the seed's GET /get_tasks_to_do/ lists)."""
    with transaction(engine) as session:
        return [fruit for (fruits,) in session.execute(SQL.pending_fruits) for fruit in fruits]


def count_open(engine: Engine) -> dict[str, int]:
    """Open orders (pending, in progress) by status, for the scrape of `salad_orders`: it costs what the work
    in flight costs, whatever the number of finished orders."""
    with autocommit(engine) as connection:
        return dict(connection.execute(SQL.open_orders_by_status).all())


def prune_finished(engine: Engine, older_than: datetime, batch: int) -> int:
    """Delete up to `batch` orders finished before `older_than` (retention). Returns how many."""
    with transaction(engine) as session:
        return session.execute(SQL.prune_orders, dict(older_than=older_than, batch=batch)).rowcount
