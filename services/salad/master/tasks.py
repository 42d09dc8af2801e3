"""The task life cycle in the database: split, claim, exchange, results, leases, reaping, retention.

Every function is one transaction (or a statement that commits by itself), or a few in a row where its
docstring says so, and safe with any number of Master replicas: claims and scans take rows with FOR UPDATE
SKIP LOCKED, and an order's countdown row serialises its last results. The statements are the named queries
of master/queries.sql (`SQL.<name>`), run on the connection: building a statement and the ORM's execution
layer cost more CPU than PostgreSQL spends running it. The rare paths that change a task or an order's state
one at a time (a failure, a resumption) use the ORM's objects.
"""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import uuid4

from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from salad.contracts.work import LeasedTask, LeaseState, Report, ResultAck
from salad.core.db import TASKS_CHANNEL, again_if_disconnected, autocommit, notify, transaction, utcnow
from salad.core.fields import MAX_TEXT
from salad.core.models import OrderStatus, Outbox, Salad, Task, TaskFailure, TaskStatus
from salad.master import hand_out, task_metrics
from salad.master.sql import SQL
from salad.master.wakeup import Waiting

REAP_BATCH = 100
# Master's PostgreSQL connections (set once per connection): claims walk ix_tasks_queued in hand-out order
# and stop at the limit. Statistics taken while the queue was short make PostgreSQL read every queued row by
# bitmap and sort them instead, which costs more the longer the backlog. Master's other queries read by primary key or their own index and need no bitmap either.
PLANNER = {"enable_bitmapscan": "off"}
CANCELLED = "cancelled: its order failed"  # the error of queued fruits dropped with their order
LEASED_TASKS = TypeAdapter(list[LeasedTask])


class TaskNotFound(Exception):
    pass


class StaleLease(Exception):
    """The lease presented is no longer the task's: it was requeued, or handed to another worker (409)."""


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
    terms = [lease_terms(taker.worker, taker.max_tasks, lease_seconds, taker.lease, now) for taker in takers]
    split.update(
        orders=json.dumps([dict(order_id=o.order_id, total=len(o.fruits), ordered_at=o.ordered_at.isoformat())
                           for o in orders]),
        batch=json.dumps(lease_first(fruit_rows(orders), terms)),
    )

    def split_now() -> list:
        with autocommit(engine) as connection:
            return connection.execute(SQL.split, split).all()  # a row per task

    # safe to repeat (orders split already are skipped); if it failed, the orders, leased to this Master by
    # Shared, would wait for that lease to expire (SALAD_INTAKE_LEASE_SECONDS) before another try
    rows = again_if_disconnected(split_now)
    by_lease = by_taker(rows)
    handed = [leased_tasks(by_lease.get((t["lease"], t["worker_name"]), []), t, timeout_seconds) for t in terms]
    return Split(len({row.order_id for row in rows}), handed)


def by_taker(rows: Iterable) -> dict[tuple[str, str], list]:
    """Leased task rows by their lease and worker: the claims that took them."""
    taken: dict[tuple[str, str], list] = {}
    for row in rows:
        taken.setdefault((row.lease_id, row.worker), []).append(row)
    return taken


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


# --- Claims and exchanges ------------------------------------------------------------------------
class Exchange(NamedTuple):
    """One request's part of an exchange statement: the successes it reports, and the claim of its terms
    (lease_terms: up to max_tasks tasks, leased under its lease)."""
    terms: dict
    successes: list[Report]


class Exchanged(NamedTuple):
    """What an exchange statement did for one request: the successes it recorded, the tasks it leased."""
    recorded: set[int]
    leased: list[LeasedTask]


class Completion(NamedTuple):
    """An order's completion: the report to Shared its exchange wrote in the outbox (row `id`), with every
    column the relay sends of a row (the last three as a new completion's)."""
    id: int
    order_id: int
    version: int
    finished_at: datetime
    preparation_time: float
    status: str = OrderStatus.COMPLETED.value
    failure_reason: None = None
    attempts: int = 0


class Together(NamedTuple):
    """What one exchange statement did: each request's part, and the orders its successes completed."""
    parts: list[Exchanged]
    completed: list[Completion]


def exchange_together(engine: Engine, exchanges: Sequence[Exchange], timeout_seconds: float,
                      reports_held: float = 0.0) -> Together:
    """Record the successes and lease the tasks of several requests in one statement that commits by itself
    (SQL.exchange): one round trip, one commit, and one countdown update per order for all of them.

    Each request's tasks come in hand-out order (priority, then the oldest order first, then the rank planned
    at the split within an order), the first request's first. The reports of the orders completed are due to
    every replica's relay `reports_held` seconds from now: a caller that sends them itself holds them.
    """
    now = utcnow()
    takers, taken = [], 0
    for part in exchanges:  # each lease runs from now: not shortened by the wait for this statement
        terms = part.terms
        takers.append(dict(lease=terms["lease"], worker_name=terms["worker_name"],
                           expires=(now + terms["lease_for"]).isoformat(), first=taken, max_tasks=terms["max_tasks"]))
        taken += terms["max_tasks"]
    successes = sorted((r for part in exchanges for r in part.successes), key=lambda r: r.id)
    with autocommit(engine) as connection:
        rows = connection.execute(SQL.exchange, dict(
            now=now, max_tasks=taken, takers=json.dumps(takers), batch=success_batch(successes),
            reports_due_at=now + timedelta(seconds=reports_held))).all()
    leased = by_taker(row for row in rows if row.kind == "leased")
    succeeded = [row for row in rows if row.kind == "succeeded"]
    task_metrics.succeeded(succeeded, now)
    completed = [Completion(row.id, row.order_id, row.version, row.finished_at, row.preparation_time)
                 for row in rows if row.kind == "completed"]
    if completed:
        task_metrics.orders_finished(OrderStatus.COMPLETED, len(completed))
    recorded = {(row.id, row.lease_id) for row in succeeded}  # a report under a stale lease is not its task's
    return Together([
        Exchanged({r.id for r in part.successes if (r.id, str(r.lease_id)) in recorded},
                  leased_tasks(leased.get((part.terms["lease"], part.terms["worker_name"]), []),
                               dict(part.terms, now=now, expires=now + part.terms["lease_for"]), timeout_seconds))
        for part in exchanges
    ], completed)


def claim(engine: Engine, worker: str, max_tasks: int, lease_seconds: float, timeout_seconds: float,
          lease: str | None = None) -> list[LeasedTask]:
    """Lease up to `max_tasks` queued tasks to `worker` in one atomic statement, committed by itself (the
    claim of an idle worker, woken by a split: no BEGIN and COMMIT round trips before it has its tasks)."""
    if max_tasks <= 0:
        return []
    terms = lease_terms(worker, max_tasks, lease_seconds, lease)
    return exchange_together(engine, [Exchange(terms, [])], timeout_seconds).parts[0].leased


def resume(engine: Engine, worker: str, lease: str, lease_seconds: float,
           timeout_seconds: float) -> list[LeasedTask]:
    """The tasks an earlier attempt of a retried request leased to `worker` (under `lease`, the request id),
    still running, their lease renewed: the retry is answered with them, and no attempt is spent.

    A request id is remembered exactly as long as the lease it names lives: until its tasks are finished or
    handed back, or the lease expires and the reaper queues them again. A retry after that finds none and
    leases as a new request would.
    """
    terms = lease_terms(worker, 0, lease_seconds, lease)
    with autocommit(engine) as connection:
        rows = connection.execute(SQL.resume, terms).all()
    return leased_tasks(rows, terms, timeout_seconds, renewed=True)


def lease_terms(worker: str, max_tasks: int, lease_seconds: float, lease: str | None = None,
                now: datetime | None = None) -> dict:
    """The parameters of a claim: the lease id of all the tasks it leases (the request id, or a new one),
    and when that lease expires."""
    now, lease_for = now or utcnow(), timedelta(seconds=lease_seconds)
    return dict(max_tasks=max_tasks, lease=lease or str(uuid4()), expires=now + lease_for, lease_for=lease_for,
                worker_name=worker, now=now)


def leased_tasks(rows, terms: dict, timeout_seconds: float, renewed: bool = False) -> list[LeasedTask]:
    """The tasks a claim leased, in hand-out order (RETURNING keeps none), their wait in the queue observed
    (unless `renewed`: a retry's, observed when first leased).
    Validated in one call to pydantic-core: 4x faster than `model_construct` task by task."""
    if not renewed:
        task_metrics.leased(rows, terms["now"])
    rows = sorted(rows, key=lambda r: (-r.priority, r.order_id, r.hand_out_rank, r.id))
    return LEASED_TASKS.validate_python([
        dict(id=r.id, order_id=r.order_id, fruit=r.fruit, execution_time=r.execution_time, attempt=r.attempts,
             lease_id=terms["lease"], lease_expires_at=terms["expires"], timeout_seconds=timeout_seconds)
        for r in rows
    ])


# --- Leases --------------------------------------------------------------------------------------
def heartbeat_lease(engine: Engine, task_id: int, lease_id: str, lease_seconds: float) -> LeaseState:
    """A worker's heartbeat for a task it prepares: extend the lease; StaleLease when it is no longer the
    task's current lease. (A worker's check-in with the registry is registry.check_in.)"""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    with transaction(engine) as session:
        changed = session.execute(SQL.heartbeat_lease,
                                  dict(task_id=task_id, lease_id=lease_id, expires=expires)).rowcount
        if not changed:
            raise_stale_or_missing(session, task_id)
    return LeaseState(id=task_id, status=TaskStatus.RUNNING, lease_expires_at=expires)


def raise_stale_or_missing(session: Session, task_id: int) -> None:
    if session.get(Task, task_id) is None:
        raise TaskNotFound(task_id)
    raise StaleLease(task_id)


def release(engine: Engine, task_id: int, lease_id: str) -> LeaseState:
    """A worker hands a task back unstarted or unfinished (shutdown): queue it again, attempt not counted."""
    with transaction(engine) as session:
        changed = session.execute(SQL.release, dict(task_id=task_id, lease_id=lease_id, now=utcnow())).rowcount
        if not changed:
            raise_stale_or_missing(session, task_id)
        notify_queued(session)
    task_metrics.retried("released")
    return LeaseState(id=task_id, status=TaskStatus.QUEUED)


def release_all(engine: Engine, leased: list[LeasedTask]) -> None:
    """Queue again tasks leased to a claim that is no longer there to take them (its worker left)."""
    for task in leased:
        try:
            release(engine, task.id, str(task.lease_id))
        except (StaleLease, TaskNotFound):  # already requeued or gone: nothing to hand back
            pass


# --- Results -------------------------------------------------------------------------------------
def record_result(engine: Engine, task_id: int, lease_id: str, outcome: str, result: str | None,
                  error: str | None) -> LeaseState:
    """Record one worker's result. A repeated post of an already recorded result is answered the same."""
    report = Report(id=task_id, lease_id=lease_id, outcome=outcome, result=result, error=error)
    ack = record_apart(engine, [report])[task_id]
    if ack.status is None:
        raise TaskNotFound(task_id)
    if ack.lease_lost:
        raise StaleLease(task_id)
    return LeaseState(id=task_id, status=ack.status)


class Prepared(NamedTuple):
    """A request's exchange before its statement: its successes and claim, and its reports answered already."""
    part: Exchange
    answered: dict[int, ResultAck]
    resumed: list[LeasedTask]  # a retry's tasks, leased by its first attempt: it leases none other


def prepare_exchange(engine: Engine, worker: str, reports: list[Report], max_tasks: int, lease_seconds: float,
                     timeout_seconds: float, lease: str | None = None, retry: bool = False) -> Prepared:
    """What must happen before an exchange's statement: its failures recorded, so a fruit queued again can be
    leased by the statement; a `retry` (the worker got no answer to an earlier attempt under the request id
    `lease`) answered with the tasks that attempt leased, if any still run under it, and its failures sent
    again answered as recorded when that attempt recorded them. Touches the database only for those."""
    first = first_reports(reports)
    failures = [r for r in first.values() if r.outcome != TaskStatus.SUCCEEDED]
    answered = record_one_by_one(engine, failures, worker if retry else None) if failures else {}
    resumed = resume(engine, worker, lease, lease_seconds, timeout_seconds) if retry and lease else []
    terms = lease_terms(worker, 0 if resumed else max_tasks, lease_seconds, lease)
    return Prepared(Exchange(terms, successes_in(first)), answered, resumed)


def needs_preparing(reports: list[Report], retry: bool) -> bool:
    """Does prepare_exchange have database work to do for this request (failures, or a retry)?"""
    return retry or any(r.outcome != TaskStatus.SUCCEEDED for r in reports)


def unrecorded(prepared: Prepared, exchanged: Exchanged) -> list[Report]:
    """The successes the statement did not record (a stale lease, a retried post, an unknown task): each is
    answered after it by record_one_by_one."""
    return [r for r in prepared.part.successes if r.id not in exchanged.recorded]


def answer_exchange(reports: list[Report], prepared: Prepared, exchanged: Exchanged,
                    apart: dict[int, ResultAck]) -> tuple[list[ResultAck], list[LeasedTask]]:
    """Each report's acknowledgement, in the order sent, and the tasks leased (or resumed)."""
    recorded = {task_id: ResultAck(id=task_id, status=TaskStatus.SUCCEEDED) for task_id in exchanged.recorded}
    answered = {**prepared.answered, **recorded, **apart}
    return [answered[r.id] for r in reports], prepared.resumed or exchanged.leased


def exchange(engine: Engine, worker: str, reports: list[Report], max_tasks: int, lease_seconds: float,
             timeout_seconds: float, lease: str | None = None,
             retry: bool = False) -> tuple[list[ResultAck], list[LeasedTask]]:
    """Record a worker's results and lease it more tasks, in one round trip for the worker, on its own.
    (Master runs the exchanges of concurrent requests together: master/exchanges.py.)

    The successes and the claim are one statement (SQL.exchange). Failures are recorded before it
    (prepare_exchange); a success it did not record is answered after it.
    """
    prepared = prepare_exchange(engine, worker, reports, max_tasks, lease_seconds, timeout_seconds, lease, retry)
    exchanged = exchange_together(engine, [prepared.part], timeout_seconds).parts[0]
    missed = unrecorded(prepared, exchanged)
    apart = record_one_by_one(engine, missed) if missed else {}
    return answer_exchange(reports, prepared, exchanged, apart)


def record_apart(engine: Engine, reports: list[Report]) -> dict[int, ResultAck]:
    """Record results apart from a claim (a result posted alone); returns each task's acknowledgement.

    Two commits: the successes under a current lease are recorded by the exchange statement, leasing nothing,
    which counts their orders down and completes them as for any exchange; then the rest (failures, stale
    leases, retried posts, unknown tasks) one by one (record_one_by_one).
    """
    first = first_reports(reports)
    successes = successes_in(first)
    recorded = record_successes_alone(engine, successes) if successes else set()
    acks = {task_id: ResultAck(id=task_id, status=TaskStatus.SUCCEEDED) for task_id in recorded}
    others = [report for task_id, report in first.items() if task_id not in recorded]
    return {**acks, **record_one_by_one(engine, others)} if others else acks


def record_successes_alone(engine: Engine, successes: list[Report]) -> set[int]:
    """Record successes whose lease still holds, with no claim (SQL.exchange leasing nothing); returns the
    ids recorded."""
    nothing = lease_terms(worker="", max_tasks=0, lease_seconds=0)
    return exchange_together(engine, [Exchange(nothing, successes)], timeout_seconds=0).parts[0].recorded


def first_reports(reports: list[Report]) -> dict[int, Report]:
    """Each task's first report: the same result twice in one batch is recorded and answered once."""
    first: dict[int, Report] = {}
    for report in reports:
        first.setdefault(report.id, report)
    return first


def successes_in(first: dict[int, Report]) -> list[Report]:
    """The reported successes, in task id order."""
    return sorted((r for r in first.values() if r.outcome == TaskStatus.SUCCEEDED), key=lambda r: r.id)


def record_one_by_one(engine: Engine, reports: list[Report],
                      resent_by: str | None = None) -> dict[int, ResultAck]:
    """Failures, and the successes a statement did not record, in a transaction, their tasks locked in id
    order, then taken in order id order (see fail_order): a failure under the current lease is recorded
    (retry_or_fail); the others are answered as they stand (a stale lease, a retried post, an unknown task).
    One report per task (first_reports).

    `resent_by`: the worker of a retried request. A failure it sends again was recorded by the first attempt
    if its task_failures row is there: the task moved on since (queued again, leased anew) under another
    lease, and the failure is answered as recorded, not as a lost lease.
    """
    now, acks = utcnow(), {}
    with transaction(engine) as session:
        connection = session.connection()
        locked = connection.execute(SQL.lock_reported, dict(ids=[r.id for r in reports]))
        rows = {row.id: row for row in locked}
        for report in sorted(reports, key=lambda r: (rows[r.id].order_id if r.id in rows else 0, r.id)):
            task_id, row = report.id, rows.get(report.id)
            if row is None:
                acks[task_id] = ResultAck(id=task_id, status=None)
            elif row.lease_id != str(report.lease_id):
                resent = resent_by is not None and failure_on_record(connection, report, resent_by)
                acks[task_id] = ResultAck(id=task_id, status=row.status, lease_lost=not resent)
            elif row.status != TaskStatus.RUNNING or report.outcome == TaskStatus.SUCCEEDED:
                acks[task_id] = ResultAck(id=task_id, status=row.status)  # a retried post: already recorded
            else:
                task = session.get(Task, task_id)
                reason = "timeout" if report.outcome == "timed_out" else "error"
                retry_or_fail(session, task, failure_error(report), now, reason=reason)
                acks[task_id] = ResultAck(id=task_id, status=task.status)
    return acks


def failure_error(report: Report) -> str:
    """The error a failure report is recorded with."""
    return report.error or f"the worker reported: {report.outcome}"


def failure_on_record(connection, report: Report, worker: str) -> bool:
    """Is this report a failure already recorded from `worker`?"""
    return report.outcome != TaskStatus.SUCCEEDED and connection.execute(
        SQL.failure_on_record, dict(task_id=report.id, worker=worker, error=failure_error(report))).scalar()


def success_batch(successes: list[Report]) -> str:
    """The successes as the JSON parameter of SQL.exchange."""
    return json.dumps([{"id": r.id, "lease_id": str(r.lease_id), "result": r.result} for r in successes])


def change_state(session: Session, order_id: int, now: datetime, **values) -> None:
    """Change the salad's state and queue the report of it to Shared, under a new version; its fruit counts
    are reported too (progress_due)."""
    version = session.execute(
        update(Salad).where(Salad.order_id == order_id)
        .values(version=Salad.version + 1, progress_due=True, **values)
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
        task_metrics.retried(reason)
        notify_queued(session)
        return
    task.status, task.finished_at = TaskStatus.FAILED, now
    task_metrics.failed()
    attempts = "1 attempt" if task.attempts == 1 else f"{task.attempts} attempts"
    fail_order(session, task.order_id, f"{task.fruit} (task {task.id}) failed after {attempts}: {error}", now)


def fail_order(session: Session, order_id: int, reason: str, now: datetime) -> None:
    """Mark the order failed, drop its queued fruits, and report it to Shared."""
    if len(reason) > MAX_TEXT:  # a worker's error may fill the limit alone: Shared would refuse the report
        reason = reason[:MAX_TEXT - 1] + "…"
    # Its queued fruits first (not waiting for one an exchange is leasing: see SQL.cancel_queued), then its
    # countdown row: callers failing several orders fail them in order id order, as an exchange statement
    # locks their countdown rows, so that the two cannot deadlock. (An order no longer in progress has no
    # queued fruit to cancel.)
    session.execute(SQL.cancel_queued, dict(order_id=order_id, now=now, error=CANCELLED))
    if session.execute(SQL.order_in_progress, dict(order_id=order_id)).scalar() is None:
        return
    change_state(session, order_id, now, status=OrderStatus.FAILED, finished_at=now, failure_reason=reason)
    task_metrics.orders_finished(OrderStatus.FAILED)


def requeue_failed(engine: Engine, order_id: int, task_id: int | None = None) -> int:
    """Queue failed tasks again with fresh attempts: one task (and the fruits its order's failure
    cancelled), or every failed task of the order. A failed order resumes. Returns how many were queued."""
    now = utcnow()
    with transaction(engine) as session:
        if task_id is None:
            requeue = session.execute(SQL.requeue_failed_order, dict(order_id=order_id, now=now))
        else:
            requeue = session.execute(SQL.requeue_failed_task, dict(order_id=order_id, task_id=task_id, now=now,
                                                                   cancelled=CANCELLED))
        if not requeue.rowcount:
            return 0
        if session.execute(SQL.order_failed, dict(order_id=order_id)).scalar() is not None:
            change_state(session, order_id, now, status=OrderStatus.IN_PROGRESS, finished_at=None,
                         failure_reason=None)
        notify_queued(session)
    return requeue.rowcount


# --- Reaping -------------------------------------------------------------------------------------
AMNESTY_AFTER = 0.5  # of a lease: a silence of every reaper this long ends in an amnesty (see reaper_pass)


class ReaperPass(NamedTuple):
    silence: float | None  # seconds since the previous pass of any replica; None: none before
    extended: int  # running leases extended by an amnesty
    reaped: int  # tasks requeued or failed because their lease expired


def reaper_pass(engine: Engine, lease_seconds: float) -> ReaperPass:
    """Requeue (or fail, past max_attempts) up to REAP_BATCH tasks whose lease expired: their worker is gone.

    First the pass records itself. If no reaper ran anywhere for over half a lease, the database or every
    Master was away and workers could not heartbeat meanwhile: they are most likely still at work, so every
    running lease is extended by a lease (an amnesty) and none is reaped. Half a lease, not a whole one:
    workers heartbeat more often than that (SALAD_HEARTBEAT_INTERVAL), so after a shorter silence no healthy
    lease has run out, and after a longer one some may have, before their workers could heartbeat again.
    The silence is measured between passes of any replica, in the database: one replica restarting while
    another reaps changes nothing.
    """
    expires = utcnow() + timedelta(seconds=lease_seconds)
    with autocommit(engine) as connection:
        ran = connection.execute(SQL.reaper_ran, dict(expires=expires,
                                                      amnesty_after=AMNESTY_AFTER * lease_seconds)).one()
    now = utcnow()
    expired_leases = select(Task).from_statement(SQL.expired_leases)
    with transaction(engine) as session:
        expired = list(session.scalars(expired_leases, dict(now=now, limit=REAP_BATCH)))
        for task in sorted(expired, key=lambda t: (t.order_id, t.id)):  # in order id order: see fail_order
            task_metrics.lease_expired()
            retry_or_fail(session, task, f"lease expired on worker {task.worker}", now, reason="lease_expired")
    return ReaperPass(ran.silence, ran.extended, len(expired))


# --- Retention -----------------------------------------------------------------------------------
def prune_finished(engine: Engine, older_than: datetime, batch: int) -> int:
    """Delete the tasks, failed attempts, reports and countdown rows of up to `batch` orders finished
    before `older_than` (one whose report Shared has not acknowledged yet is kept). Returns how many."""
    with transaction(engine) as session:
        return len(session.execute(SQL.prune_orders, dict(older_than=older_than, batch=batch)).all())
