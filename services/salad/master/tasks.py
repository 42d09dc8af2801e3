"""The task life cycle in the database: split, claim, heartbeat, result, release, reap.

Every function is one transaction and safe with any number of Master replicas: claims and scans take
rows with FOR UPDATE SKIP LOCKED, and an order's countdown row serialises its last results.
"""

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import uuid4

from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Integer,
    String,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlmodel import Session

from salad.core.db import (
    TASKS_CHANNEL,
    again_if_disconnected,
    autocommit,
    json_rows,
    notify,
    transaction,
    utcnow,
)
from salad.core.fields import MAX_TEXT
from salad.core.metrics import (
    LEASE_EXPIRIES,
    ORDERS_FINISHED_BY_MASTER,
    TASK_EXECUTION,
    TASK_LATENCY,
    TASK_QUEUE_WAIT,
    TASK_RETRIES,
    TASKS_FINISHED,
    observe_by_label,
)
from salad.core.models import OrderStatus, Outbox, Salad, Task, TaskFailure, TaskStatus
from salad.master import hand_out
from salad.master.schemas import LeasedTask, LeaseState, Report, ResultAck
from salad.master.wakeup import Waiting

REAP_BATCH = 100
# Master's PostgreSQL connections (set once per connection): claims walk ix_tasks_queued in hand-out order
# and stop at the limit. Statistics taken while the queue was short make PostgreSQL read every queued row by
# bitmap and sort them instead: 7 ms rather than 2.6 ms per claim of 64 with 10,000 queued, and growing with
# the backlog. Master's other queries read by primary key or their own index and need no bitmap either.
PLANNER = {"enable_bitmapscan": "off"}
FINAL = (OrderStatus.COMPLETED, OrderStatus.FAILED)
CANCELLED = "cancelled: its order failed"  # the error of queued fruits dropped with their order
LEASED_TASKS = TypeAdapter(list[LeasedTask])


# The hot path's statements, built once and run on the session's Core connection: building a statement and
# the ORM's execution layer cost more CPU than PostgreSQL spends running it.
tasks_table, salads_table = Task.__table__, Salad.__table__


def status_is(status: TaskStatus):
    """The status written into the SQL, not bound: a prepared statement's generic plan can then use the
    partial indexes (`WHERE status = 'queued'`), and PostgreSQL stops planning the exchange afresh at each
    run (1-2 ms; 0.7 ms less of its CPU per exchange of 64, ad hoc)."""
    return tasks_table.c.status == literal(status.value, literal_execute=True)


CLAIMABLE = (
    select(tasks_table.c.id)
    .where(status_is(TaskStatus.QUEUED))
    .order_by(tasks_table.c.priority.desc(), tasks_table.c.order_id, tasks_table.c.hand_out_rank,
              tasks_table.c.id)
    .limit(bindparam("max_tasks"))
    .with_for_update(skip_locked=True)
)
CLAIM = (
    update(tasks_table).where(tasks_table.c.id.in_(CLAIMABLE.scalar_subquery()))
    .values(status=TaskStatus.RUNNING, attempts=tasks_table.c.attempts + 1, lease_id=bindparam("lease"),
            lease_expires_at=bindparam("expires"), worker=bindparam("worker_name"),
            claimed_at=bindparam("now"))
    .returning(tasks_table.c.id, tasks_table.c.order_id, tasks_table.c.fruit, tasks_table.c.execution_time,
               tasks_table.c.attempts, tasks_table.c.queued_at, tasks_table.c.priority,
               tasks_table.c.hand_out_rank)
)
LOCK_REPORTED = (
    select(tasks_table.c.id, tasks_table.c.order_id, tasks_table.c.fruit, tasks_table.c.status,
           tasks_table.c.lease_id, tasks_table.c.claimed_at, tasks_table.c.created_at)
    .where(tasks_table.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(tasks_table.c.id).with_for_update()
)


def succeed_statement():
    """Record every success whose lease still holds in one statement, returning what the metrics and the
    countdown need: executed row by row, a batch cost Master more CPU than PostgreSQL spent on it."""
    batch = json_rows(dict(id=BigInteger, lease_id=String, result=String))
    return (
        update(tasks_table)
        .where(tasks_table.c.id == batch.c.id, tasks_table.c.lease_id == batch.c.lease_id,
               status_is(TaskStatus.RUNNING))
        .values(status=TaskStatus.SUCCEEDED, result=batch.c.result, finished_at=bindparam("now"),
                lease_expires_at=None)
        .returning(tasks_table.c.id, tasks_table.c.order_id, tasks_table.c.fruit, tasks_table.c.claimed_at,
                   tasks_table.c.created_at)
    )


def split_statement(new_orders):
    """Insert the tasks of a batch of orders in one statement (the fruits as one JSON parameter), only those
    of the orders `new_orders` holds."""
    batch = json_rows(dict(order_id=BigInteger, position=Integer, fruit=String, execution_time=Integer,
                           priority=Integer, hand_out_rank=Integer, status=String, attempts=Integer,
                           lease_id=String, worker=String, lease_expires_at=DateTime))
    now = bindparam("now", type_=tasks_table.c.created_at.type)
    leased = batch.c.lease_id.is_not(None)
    fruits = select(batch.c.order_id, batch.c.position, batch.c.fruit, batch.c.execution_time, batch.c.priority,
                    batch.c.hand_out_rank, batch.c.status, batch.c.attempts, bindparam("max_attempts"), now, now,
                    batch.c.lease_id, batch.c.worker, batch.c.lease_expires_at, case((leased, now), else_=null()))
    fruits = fruits.join(new_orders, new_orders.c.order_id == batch.c.order_id)
    return insert(tasks_table).from_select(
        ["order_id", "position", "fruit", "execution_time", "priority", "hand_out_rank", "status", "attempts",
         "max_attempts", "created_at", "queued_at", "lease_id", "worker", "lease_expires_at", "claimed_at"],
        fruits,
    )


def add_salads_statement():
    """Insert countdown rows, skipping orders that have one, and return the orders inserted: one statement
    both finds the orders not split yet and claims them (a concurrent insert of the same order waits for
    the other transaction, then skips it)."""
    return (postgresql.insert(salads_table).on_conflict_do_nothing(index_elements=[salads_table.c.order_id])
            .returning(salads_table.c.order_id))


def split_in_one_statement():
    """The countdown rows and the tasks of a batch of orders in one statement, which commits by itself.
    Idle workers wait for a split: as two statements in a transaction (BEGIN, both inserts, NOTIFY, COMMIT)
    the tasks could be claimed four round trips later."""
    orders = json_rows(dict(order_id=BigInteger, total=Integer, ordered_at=DateTime), param="orders")
    new_orders = (
        add_salads_statement()
        .from_select(["order_id", "total", "remaining", "status", "ordered_at", "version", "seed_collected"],
                     select(orders.c.order_id, orders.c.total, orders.c.total, literal(OrderStatus.IN_PROGRESS.value),
                            orders.c.ordered_at, literal(0), literal(False)))
        .cte("new_orders")
    )
    # pg_notify per task row: PostgreSQL sends one notification per transaction for identical ones, at its
    # commit, so waiting claims wake as the tasks become visible (a NOTIFY statement after: a round trip later).
    # The payload is the task's status: tasks the split leased itself ('running') wake no claim anywhere.
    return (split_statement(new_orders).add_cte(new_orders)
            .returning(tasks_table.c.id, tasks_table.c.order_id, tasks_table.c.fruit, tasks_table.c.execution_time,
                       tasks_table.c.attempts, tasks_table.c.queued_at, tasks_table.c.priority,
                       tasks_table.c.hand_out_rank, tasks_table.c.lease_id,
                       func.pg_notify(TASKS_CHANNEL, tasks_table.c.status)))


SPLIT = split_in_one_statement()
SUCCEED = succeed_statement()
COUNT_DOWN = (  # counts a failed order's late results too: a requeue resumes it, still counting right
    update(salads_table).where(salads_table.c.order_id == bindparam("order"))
    .values(remaining=salads_table.c.remaining - bindparam("done"))
    .returning(salads_table.c.remaining, salads_table.c.ordered_at, salads_table.c.status)
)


def exchange_in_one_statement():
    """A worker's successes recorded, their orders counted down (an order's last fruit completes
    it and queues its report to Shared), and its next tasks leased, in one statement that commits by itself.

    As statements in a transaction (BEGIN, successes, claim, a countdown per order, the completion and its
    report, COMMIT) an exchange of 64 results and 64 claims cost Master 11 ms of CPU, against 7 ms now: on
    this machine a round trip costs psycopg ~0.1 ms of CPU, and SQLAlchemy as much again. Does what
    `count_down` and `change_state` do, in SQL; countdown rows are locked in order id order, so concurrent
    exchanges cannot deadlock on them. One result set: `kind` tells a leased task, a recorded success and a
    completed order apart.
    """
    salads, outbox = salads_table, Outbox.__table__
    now = bindparam("now", type_=salads.c.finished_at.type)
    succeeded = SUCCEED.cte("succeeded")
    done = (select(succeeded.c.order_id, func.count().label("fruits"))
            .group_by(succeeded.c.order_id).cte("done"))
    left = salads.c.remaining - done.c.fruits  # counts a failed order's late results too, as COUNT_DOWN does
    locked = (
        select(salads.c.order_id, left.label("remaining"), salads.c.ordered_at,
               ((left <= 0) & (salads.c.status == OrderStatus.IN_PROGRESS)).label("completes"))
        .join_from(salads, done, salads.c.order_id == done.c.order_id)
        .order_by(salads.c.order_id).with_for_update(of=salads)
        .cte("locked")
    )
    completes = locked.c.completes
    preparation = func.greatest(0, cast(func.extract("epoch", now - locked.c.ordered_at), Float))
    counted = (
        update(salads).where(salads.c.order_id == locked.c.order_id)
        .values(remaining=locked.c.remaining, version=salads.c.version + cast(completes, Integer),
                status=case((completes, OrderStatus.COMPLETED.value), else_=salads.c.status),
                finished_at=case((completes, now), else_=salads.c.finished_at),
                preparation_time=case((completes, preparation), else_=salads.c.preparation_time))
        .returning(salads.c.order_id, salads.c.version, salads.c.finished_at, salads.c.preparation_time,
                   completes)
        .cte("counted")
    )
    reported = (
        insert(outbox).from_select(
            ["order_id", "version", "status", "finished_at", "preparation_time", "attempts",
             "next_attempt_at"],
            select(counted.c.order_id, counted.c.version, literal(OrderStatus.COMPLETED.value),
                   counted.c.finished_at, counted.c.preparation_time, literal(0), counted.c.finished_at)
            .where(counted.c.completes))
        .returning(outbox.c.order_id)
        .cte("reported")
    )
    claimed = CLAIM.cte("claimed")
    return union_all(
        select(literal("leased").label("kind"), claimed.c.id, claimed.c.order_id, claimed.c.fruit,
               claimed.c.execution_time, claimed.c.attempts, claimed.c.priority, claimed.c.queued_at,
               null().label("claimed_at"), null().label("created_at"), claimed.c.hand_out_rank),
        select(literal("succeeded"), succeeded.c.id, succeeded.c.order_id, succeeded.c.fruit, null(), null(),
               null(), null(), succeeded.c.claimed_at, succeeded.c.created_at, null()),
        select(literal("completed"), null(), reported.c.order_id, null(), null(), null(), null(), null(),
               null(), null(), null()),
    )


EXCHANGE = exchange_in_one_statement()


class TaskNotFound(Exception):
    pass


class LeaseLost(Exception):
    """The task is no longer leased under this id: it was requeued, or handed to another worker."""


def seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def notify_queued(session: Session) -> None:
    """Tell every replica's waiting claims that tasks were queued (delivered at commit)."""
    notify(session, TASKS_CHANNEL)


# --- Splitting orders ----------------------------------------------------------------------------
class NewOrder(NamedTuple):
    order_id: int
    fruits: list[str]
    execution_times: list[int]
    priority: int
    ordered_at: datetime
    hand_out_ranks: list[int] | None = None  # planned at the split (hand_out.plan); None: longest first


class Split(NamedTuple):
    orders: int  # orders split now (the others had been already)
    handed: list[list[LeasedTask]]  # the tasks leased to each of the split's takers


def split_orders(engine: Engine, orders: list[NewOrder], max_attempts: int, takers: Sequence[Waiting] = (),
                 lease_seconds: float = 0.0, timeout_seconds: float = 0.0) -> Split:
    """Create the tasks and countdown rows of a batch of orders, all or none (one commit for all).
    An order that already has them (a retried intake, or another Master got there first) is skipped:
    its countdown row is not inserted again, so neither are its tasks.

    The batch's first tasks, in hand-out order, are leased in the same statement to `takers` (claims
    waiting on this Master), each up to its `max_tasks`, as the claims they spare would have.
    """
    now = utcnow()
    split = dict(max_attempts=max_attempts, now=now)
    terms = [lease_terms(taker.worker, taker.max_tasks, lease_seconds, now) for taker in takers]
    split.update(
        orders=json.dumps([dict(order_id=o.order_id, total=len(o.fruits), ordered_at=o.ordered_at.isoformat())
                           for o in orders]),
        batch=json.dumps(lease_first(fruit_rows(orders), terms)),
    )

    def split_now() -> list:
        with autocommit(engine) as connection:
            return connection.execute(SPLIT, split).all()  # a row per task

    # safe to repeat (orders split already are skipped); if it failed, the orders, leased to this Master by
    # Shared, would wait for that lease to expire (SALAD_INTAKE_LEASE_SECONDS) before another try
    rows = again_if_disconnected(split_now)
    handed = [leased_tasks([r for r in rows if r.lease_id == t["lease"]], t, timeout_seconds) for t in terms]
    return Split(len({row.order_id for row in rows}), handed)


def lease_first(rows: list[dict], terms: list[dict]) -> list[dict]:
    """Lease the first fruit rows in hand-out order to the takers' `terms`, each up to its max_tasks."""
    ahead = sorted(rows, key=lambda r: (-r["priority"], r["order_id"], r["hand_out_rank"]))
    start = 0
    for lease in terms:
        for row in ahead[start:start + lease["max_tasks"]]:
            row.update(status=TaskStatus.RUNNING.value, attempts=1, lease_id=lease["lease"],
                       worker=lease["worker_name"], lease_expires_at=lease["expires"].isoformat())
        start += lease["max_tasks"]
    return rows


def fruit_rows(orders: list[NewOrder]) -> list[dict]:
    """A row per fruit, queued."""
    return [
        dict(order_id=o.order_id, position=i, fruit=fruit, execution_time=seconds, priority=o.priority,
             hand_out_rank=rank, status=TaskStatus.QUEUED.value, attempts=0)
        for o in orders
        for i, (fruit, seconds, rank) in enumerate(zip(
            o.fruits, o.execution_times, o.hand_out_ranks or hand_out.plan(o.execution_times, []), strict=True
        ))
    ]


# --- Claims --------------------------------------------------------------------------------------
def claim(engine: Engine, worker: str, max_tasks: int, lease_seconds: float,
          timeout_seconds: float) -> list[LeasedTask]:
    """Lease up to `max_tasks` queued tasks to `worker` in one atomic statement, committed by itself (the
    claim of an idle worker, woken by a split: no BEGIN and COMMIT round trips before it has its tasks).

    Hand-out order: priority, then oldest order first, then the rank planned at the split within an order.
    """
    if max_tasks <= 0:
        return []
    terms = lease_terms(worker, max_tasks, lease_seconds)
    with autocommit(engine) as connection:
        return leased_tasks(connection.execute(CLAIM, terms).all(), terms, timeout_seconds)


def lease_terms(worker: str, max_tasks: int, lease_seconds: float, now: datetime | None = None) -> dict:
    """The parameters of a claim: a new lease id for all the tasks it leases, and when that lease expires."""
    now = now or utcnow()
    return dict(max_tasks=max_tasks, lease=str(uuid4()), expires=now + timedelta(seconds=lease_seconds),
                worker_name=worker, now=now)


def leased_tasks(rows, terms: dict, timeout_seconds: float) -> list[LeasedTask]:
    """The tasks a claim leased, in hand-out order (RETURNING keeps none), their wait in the queue observed.
    Validated in one call to pydantic-core: 4x faster than `model_construct` task by task."""
    now = terms["now"]
    observe_by_label(TASK_QUEUE_WAIT, ((row.fruit, seconds_between(row.queued_at, now)) for row in rows))
    rows = sorted(rows, key=lambda r: (-r.priority, r.order_id, r.hand_out_rank, r.id))
    return LEASED_TASKS.validate_python([
        dict(id=r.id, order_id=r.order_id, fruit=r.fruit, execution_time=r.execution_time, attempt=r.attempts,
             lease_id=terms["lease"], lease_expires_at=terms["expires"], timeout_seconds=timeout_seconds)
        for r in rows
    ])


def heartbeat(engine: Engine, task_id: int, lease_id: str, lease_seconds: float) -> LeaseState:
    """Extend a lease; LeaseLost when it is no longer the task's current lease."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    with transaction(engine) as session:
        changed = session.execute(
            update(Task).where(Task.id == task_id, Task.lease_id == lease_id, Task.status == TaskStatus.RUNNING)
            .values(lease_expires_at=expires)
        ).rowcount
        if not changed:
            raise_lost_or_missing(session, task_id)
    return LeaseState(id=task_id, status=TaskStatus.RUNNING, lease_expires_at=expires)


def raise_lost_or_missing(session: Session, task_id: int) -> None:
    if session.get(Task, task_id) is None:
        raise TaskNotFound(task_id)
    raise LeaseLost(task_id)


# --- Results -------------------------------------------------------------------------------------
def record_result(engine: Engine, task_id: int, lease_id: str, outcome: str, result: str | None,
                  error: str | None) -> LeaseState:
    """Record one worker's result. A repeated post of an already recorded result is answered the same."""
    report = Report(id=task_id, lease_id=lease_id, outcome=outcome, result=result, error=error)
    ack = record_apart(engine, [report])[task_id]
    if ack.status is None:
        raise TaskNotFound(task_id)
    if ack.lease_lost:
        raise LeaseLost(task_id)
    return LeaseState(id=task_id, status=ack.status)


def exchange(engine: Engine, worker: str, reports: list[Report], max_tasks: int, lease_seconds: float,
             timeout_seconds: float) -> tuple[list[ResultAck], list[LeasedTask]]:
    """Record a worker's results and lease it more tasks, in one round trip for the worker.

    The successes and the claim are one statement (EXCHANGE). Failures are recorded before it, so a fruit
    queued again can be leased by this same exchange; a success it did not record (a stale lease, a retried
    post, an unknown task) is answered after it.
    """
    first = first_reports(reports)
    failures = [r for r in first.values() if r.outcome != TaskStatus.SUCCEEDED]
    answered = record_apart(engine, failures) if failures else {}
    successes = successes_in(first)
    terms = lease_terms(worker, max_tasks, lease_seconds)
    with autocommit(engine) as connection:
        rows = connection.execute(EXCHANGE, dict(terms, batch=success_batch(successes))).all()
    leased = [row for row in rows if row.kind == "leased"]
    succeeded = [row for row in rows if row.kind == "succeeded"]
    observe_successes(succeeded, terms["now"])
    if completed := sum(row.kind == "completed" for row in rows):
        ORDERS_FINISHED_BY_MASTER.labels(OrderStatus.COMPLETED).inc(completed)
    answered.update((row.id, ResultAck(id=row.id, status=TaskStatus.SUCCEEDED)) for row in succeeded)
    unrecorded = [r for r in successes if r.id not in answered]
    if unrecorded:
        answered.update(record_apart(engine, unrecorded))
    return [answered[r.id] for r in reports], leased_tasks(leased, terms, timeout_seconds)


def record_apart(engine: Engine, reports: list[Report]) -> dict[int, ResultAck]:
    """Record results in a transaction of their own; returns each task's acknowledgement."""
    with transaction(engine) as session:
        acks, done = record_results(session, reports)
        count_down(session, done)
    return {ack.id: ack for ack in acks}


def first_reports(reports: list[Report]) -> dict[int, Report]:
    """Each task's first report: the same result twice in one batch is recorded and answered once."""
    first: dict[int, Report] = {}
    for report in reports:
        first.setdefault(report.id, report)
    return first


def successes_in(first: dict[int, Report]) -> list[Report]:
    """The reported successes, in task id order."""
    return sorted((r for r in first.values() if r.outcome == TaskStatus.SUCCEEDED), key=lambda r: r.id)


def record_results(session: Session, reports: list[Report]) -> tuple[list[ResultAck], Counter]:
    """Record results in a few statements whatever their number; each is acknowledged on its own.

    Successes under a current lease are recorded by one statement; the rest (failures, stale leases,
    retried posts, unknown tasks) are then read under lock and answered one by one. Returns the
    acknowledgements and the fruits done per order, for `count_down` to apply last in the transaction.
    """
    now = utcnow()
    first = first_reports(reports)
    successes = successes_in(first)
    recorded, done = succeed(session, successes, now)
    acks = {task_id: ResultAck(id=task_id, status=TaskStatus.SUCCEEDED) for task_id in recorded}
    others = sorted(task_id for task_id in first if task_id not in recorded)
    rows = {row.id: row for row in session.connection().execute(LOCK_REPORTED, dict(ids=others))} if others else {}
    for task_id in others:
        report, row = first[task_id], rows.get(task_id)
        if row is None:
            acks[task_id] = ResultAck(id=task_id, status=None)
        elif row.lease_id != str(report.lease_id):
            acks[task_id] = ResultAck(id=task_id, status=row.status, lease_lost=True)
        elif row.status != TaskStatus.RUNNING or report.outcome == TaskStatus.SUCCEEDED:
            acks[task_id] = ResultAck(id=task_id, status=row.status)  # a retried post: already recorded
        else:
            task = session.get(Task, task_id)
            reason = "timeout" if report.outcome == "timed_out" else "error"
            retry_or_fail(session, task, report.error or f"the worker reported: {report.outcome}", now, reason=reason)
            acks[task_id] = ResultAck(id=task_id, status=task.status)
    return [acks[r.id] for r in reports], done


def succeed(session: Session, successes: list[Report], now: datetime) -> tuple[set[int], Counter]:
    """Record the successes whose lease still holds; returns their ids and the fruits done per order."""
    if not successes:
        return set(), Counter()
    rows = session.connection().execute(SUCCEED, dict(batch=success_batch(successes), now=now)).all()
    observe_successes(rows, now)
    return {row.id for row in rows}, Counter(row.order_id for row in rows)


def success_batch(successes: list[Report]) -> str:
    """The successes as SUCCEED's JSON parameter."""
    return json.dumps([{"id": r.id, "lease_id": str(r.lease_id), "result": r.result} for r in successes])


def observe_successes(rows, now: datetime) -> None:
    """Metrics of recorded successes (SUCCEED's rows): how long each ran, and since its creation."""
    observe_by_label(TASK_EXECUTION, ((row.fruit, seconds_between(row.claimed_at, now)) for row in rows))
    observe_by_label(TASK_LATENCY, ((row.fruit, seconds_between(row.created_at, now)) for row in rows))
    TASKS_FINISHED.labels(TaskStatus.SUCCEEDED).inc(len(rows))


def count_down(session: Session, done: Counter) -> None:
    """Count the fruits done off their orders; an order's last one completes it in this same transaction.
    (An exchange's successes are counted by EXCHANGE, which does the same in SQL.)

    Run it last before the commit: an order's countdown row, which every result of that order updates,
    stays locked only until then. Orders are taken in id order, so concurrent batches cannot deadlock.
    """
    now = utcnow()
    for order_id, fruits in sorted(done.items()):
        salad = session.connection().execute(COUNT_DOWN, dict(order=order_id, done=fruits)).one_or_none()
        if salad is None or salad.remaining > 0 or salad.status != OrderStatus.IN_PROGRESS:
            continue
        change_state(session, order_id, now, status=OrderStatus.COMPLETED, finished_at=now,
                     preparation_time=seconds_between(salad.ordered_at, now))
        ORDERS_FINISHED_BY_MASTER.labels(OrderStatus.COMPLETED).inc()


def change_state(session: Session, order_id: int, now: datetime, **values) -> None:
    """Change the salad's state and queue the report of it to Shared, under a new version."""
    version = session.execute(
        update(Salad).where(Salad.order_id == order_id).values(version=Salad.version + 1, **values)
        .returning(Salad.version)
    ).scalar_one()
    session.add(Outbox(order_id=order_id, version=version, status=values["status"],
                       finished_at=values.get("finished_at"), preparation_time=values.get("preparation_time"),
                       failure_reason=values.get("failure_reason"), next_attempt_at=now))


def retry_or_fail(session: Session, task: Task, error: str, now: datetime, reason: str) -> None:
    """Queue the task again while it has attempts left; then fail it and its order."""
    session.add(TaskFailure(task_id=task.id, order_id=task.order_id, attempt=task.attempts, worker=task.worker,
                            error=error, failed_at=now))
    task.error, task.lease_expires_at = error, None
    if task.attempts < task.max_attempts:
        task.status, task.queued_at, task.worker, task.lease_id = TaskStatus.QUEUED, now, None, None
        TASK_RETRIES.labels(reason).inc()
        notify_queued(session)
        return
    task.status, task.finished_at = TaskStatus.FAILED, now
    TASKS_FINISHED.labels(TaskStatus.FAILED).inc()
    fail_order(session, task.order_id, f"{task.fruit} (task {task.id}) failed after {task.attempts} "
                                       f"attempts: {error}", now)


def fail_order(session: Session, order_id: int, reason: str, now: datetime) -> None:
    """Mark the order failed, drop its queued fruits, and report it to Shared."""
    if len(reason) > MAX_TEXT:  # a worker's error may fill the limit alone: Shared would refuse the report
        reason = reason[:MAX_TEXT - 1] + "…"
    in_progress = session.scalar(
        select(Salad.order_id).where(Salad.order_id == order_id, Salad.status == OrderStatus.IN_PROGRESS)
        .with_for_update()
    )
    if in_progress is None:
        return
    change_state(session, order_id, now, status=OrderStatus.FAILED, finished_at=now, failure_reason=reason)
    session.execute(
        update(Task).where(Task.order_id == order_id, Task.status == TaskStatus.QUEUED)
        .values(status=TaskStatus.FAILED, finished_at=now, error=CANCELLED)
    )
    ORDERS_FINISHED_BY_MASTER.labels(OrderStatus.FAILED).inc()


def requeue_failed(engine: Engine, order_id: int, task_id: int | None = None) -> int:
    """Queue failed tasks again with fresh attempts: one task (and the fruits its order's failure
    cancelled), or every failed task of the order. A failed order resumes. Returns how many were queued."""
    now = utcnow()
    chosen = true() if task_id is None else (Task.id == task_id) | (Task.error == CANCELLED)
    with transaction(engine) as session:
        requeued = session.execute(
            update(Task).where(Task.order_id == order_id, Task.status == TaskStatus.FAILED, chosen)
            .values(status=TaskStatus.QUEUED, attempts=0, queued_at=now, worker=None, lease_id=None,
                    lease_expires_at=None, finished_at=None)
        ).rowcount
        if not requeued:
            return 0
        failed = session.scalar(
            select(Salad.order_id).where(Salad.order_id == order_id, Salad.status == OrderStatus.FAILED)
            .with_for_update()
        )
        if failed is not None:
            change_state(session, order_id, now, status=OrderStatus.IN_PROGRESS, finished_at=None,
                         failure_reason=None)
        notify_queued(session)
    return requeued


def release(engine: Engine, task_id: int, lease_id: str) -> LeaseState:
    """A worker hands a task back unstarted or unfinished (shutdown): queue it again, attempt not counted."""
    now = utcnow()
    with transaction(engine) as session:
        changed = session.execute(
            update(Task).where(Task.id == task_id, Task.lease_id == lease_id, Task.status == TaskStatus.RUNNING)
            .values(status=TaskStatus.QUEUED, attempts=Task.attempts - 1, queued_at=now, worker=None,
                    lease_id=None, lease_expires_at=None)
        ).rowcount
        if not changed:
            raise_lost_or_missing(session, task_id)
        notify_queued(session)
    TASK_RETRIES.labels("released").inc()
    return LeaseState(id=task_id, status=TaskStatus.QUEUED)


def release_all(engine: Engine, leased: list[LeasedTask]) -> None:
    """Queue again tasks leased to a claim that is no longer there to take them (its worker left)."""
    for task in leased:
        try:
            release(engine, task.id, str(task.lease_id))
        except (LeaseLost, TaskNotFound):  # already requeued or gone: nothing to hand back
            pass


def extend_running_leases(engine: Engine, lease_seconds: float) -> int:
    """Give every running task one more lease period (see Reaper: after a gap, workers get time to beat)."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    with transaction(engine) as session:
        return session.execute(
            update(Task).where(Task.status == TaskStatus.RUNNING, Task.lease_expires_at < expires)
            .values(lease_expires_at=expires)
        ).rowcount


def reap_expired(engine: Engine) -> int:
    """Requeue (or fail, past max_attempts) tasks whose lease expired: their worker is gone."""
    now = utcnow()
    with transaction(engine) as session:
        expired = list(session.scalars(
            select(Task).where(Task.status == TaskStatus.RUNNING, Task.lease_expires_at < now)
            .order_by(Task.lease_expires_at).limit(REAP_BATCH).with_for_update(skip_locked=True)
        ))
        for task in expired:
            LEASE_EXPIRIES.inc()
            retry_or_fail(session, task, f"lease expired on worker {task.worker}", now, reason="lease_expired")
    return len(expired)


# --- Retention -----------------------------------------------------------------------------------
def prune_finished(engine: Engine, older_than: datetime, batch: int) -> int:
    """Delete the tasks, failed attempts, reports and countdown rows of up to `batch` orders finished
    before `older_than` (one whose report Shared has not acknowledged yet is kept). Returns how many."""
    undelivered = select(Outbox.order_id).where(Outbox.delivered_at.is_(None))
    with transaction(engine) as session:
        order_ids = list(session.scalars(
            select(Salad.order_id)
            .where(Salad.status.in_(FINAL), Salad.finished_at < older_than,
                   Salad.order_id.not_in(undelivered))
            .order_by(Salad.finished_at).limit(batch).with_for_update(skip_locked=True)
        ))
        if order_ids:
            for model in (TaskFailure, Task, Outbox, Salad):
                session.execute(delete(model).where(model.order_id.in_(order_ids)))
    return len(order_ids)
