"""Master's worker API (/v1): claim with long-poll, heartbeat, result, release; the worker registry."""

import asyncio
import time
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from salad.contracts.internal import Progress
from salad.contracts.operators import Requeued, Stats, TaskPublic, WorkerPublic
from salad.contracts.work import (
    ClaimRequest,
    ClaimResponse,
    ExchangeRequest,
    ExchangeResponse,
    LeasedTask,
    LeaseRef,
    LeaseState,
    Report,
    ResultAck,
    TaskResult,
    WorkerCheckIn,
    WorkerName,
)
from salad.core.auth import Role, require
from salad.core.fields import MAX_ID, IdPath
from salad.core.models import TaskStatus
from salad.core.settings import master_settings
from salad.core.web import as_json, errors, held_open
from salad.master import registry, task_views, tasks
from salad.master.wakeup import HUNG_UP, stop_attempt

router = APIRouter(prefix="/v1", responses=errors(401, 403))
LEASE_ERRORS = errors(404, 409)
WORKER = [require(Role.WORKER)]
CLIENT = [require(Role.CLIENT)]
SHARED = [require(Role.CLIENT, Role.MASTER)]  # Shared presents the master token, as it is called with
MAX_PROGRESS_ORDERS = 100

TaskId = IdPath


def lease_errors(call):
    """Run a lease operation, answering 404 for an unknown task and 409 for a stale lease."""
    try:
        return call()
    except tasks.TaskNotFound as exc:
        raise HTTPException(404, detail=f"task {exc.args[0]} not found")
    except tasks.StaleLease as exc:
        raise HTTPException(409, detail=f"task {exc.args[0]} is no longer leased under this lease_id")


@router.post("/tasks/claim", response_model=ClaimResponse, tags=["workers"], dependencies=WORKER)
async def claim_tasks(body: ClaimRequest, request: Request):
    """Lease up to `max_tasks` tasks; with `wait`, hold the request until one is queued (long-poll).
    With a `request_id`, the worker may send it again when it gets no answer: see the exchange."""
    _, leased = await exchange_and_wait(request, body, [])
    return as_json(ClaimResponse(tasks=leased))


@router.post("/tasks/exchange", response_model=ExchangeResponse, tags=["workers"], dependencies=WORKER)
async def exchange_tasks(body: ExchangeRequest, request: Request):
    """Record finished tasks' results and lease up to `max_tasks` more, in one round trip and one commit.

    Each result is acknowledged on its own (`lease_lost` for a stale lease); the results are recorded
    before any wait. With `wait`, the request is held until a task is queued (long-poll), as for claims.

    With a `request_id`, the tasks are leased under it: a worker that got no answer sends the same request
    again with `retry`, and gets the tasks the first attempt leased (no attempt spent, no lease waited out)
    while their lease lives; its results are answered as recorded the first time.
    """
    acks, leased = await exchange_and_wait(request, body, body.results)
    return as_json(ExchangeResponse(results=acks, tasks=leased))


async def exchange_and_wait(request: Request, body: ClaimRequest | ExchangeRequest,
                            results: list[Report]) -> tuple[list[ResultAck], list[LeasedTask]]:
    """One attempt of a claim or an exchange, its tasks leased under its request id (or a new lease id). An
    attempt whose worker is no longer there to take its answer answers nothing: see wakeup.Attempts."""
    request_id = str(body.request_id) if body.request_id else None
    async with request.app.state.attempts.attempt(body.worker, request_id) as stop:
        acks, leased = await lease_or_wait(request, body, results, request_id or str(uuid4()), stop)
        if stop.done():  # the worker hung up, or sent this request again: this answer reaches nobody
            if leased and stop.result() == HUNG_UP:  # hand them back (a retry would find none: it claims)
                await run_in_threadpool(tasks.release_all, request.app.state.engine, leased)
            return acks, []  # RETRIED: the retry, waiting for this attempt to end, answers them
        return acks, leased


async def lease_or_wait(request: Request, body: ClaimRequest | ExchangeRequest, results: list[Report],
                        lease: str, stop: asyncio.Future) -> tuple[list[ResultAck], list[LeasedTask]]:
    """Record the results and lease tasks under `lease`; with none to lease, wait for some (long-poll)
    until the deadline, `stop`, or the replica stopping."""
    settings, signal, exchanges = master_settings(), request.app.state.signal, request.app.state.exchanges
    worker, max_tasks = body.worker, min(body.max_tasks, settings.max_tasks_per_claim)
    deadline = time.monotonic() + min(body.wait, settings.max_claim_wait)
    read_at = signal.fired  # tasks queued while the queue is read below wake this claim's wait at once
    if results or not max_tasks or body.retry or not signal.known_empty(read_at):
        acks, leased = await exchanges.exchange(worker, results, max_tasks, lease, body.retry)
        if not body.retry:  # a retry's tasks may be its first attempt's: they say nothing of the queue
            signal.claimed(len(leased), max_tasks, read_at)
    else:  # an idle worker's long-poll: nothing queued since a claim here found the queue short
        acks, leased = [], []
    hang_up = None
    try:
        while not leased and max_tasks and not stop.done() and not signal.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if hang_up is None:  # the worker hangs up (it is stopping, or retrying): its claim stops at once
                hang_up = asyncio.ensure_future(request.receive())
                hang_up.add_done_callback(lambda watch: watch.cancelled() or stop_attempt(stop, HUNG_UP))
                held_open(request)  # from here its duration is the wait, not Master's latency
            # woken (it claims), or handed a split's tasks
            leased = await signal.wait(remaining, worker, max_tasks, since=read_at, gone=stop, lease=lease)
            if not leased and not stop.done():
                if time.monotonic() >= deadline - 0.001 or signal.stopping:  # the next long-poll claims
                    break
                read_at = signal.fired
                leased = await exchanges.claim(worker, max_tasks, lease)
                signal.claimed(len(leased), max_tasks, read_at, woken=True)
    finally:
        if hang_up is not None:
            hang_up.cancel()
    return acks, leased


@router.post("/tasks/{task_id}/heartbeat", response_model=LeaseState, responses=LEASE_ERRORS, tags=["workers"],
             dependencies=WORKER)
def heartbeat_lease(task_id: TaskId, body: LeaseRef, request: Request):
    """Extend the task's lease. 409 when the lease is stale: stop working on the task."""
    settings = master_settings()
    return lease_errors(
        lambda: tasks.heartbeat_lease(request.app.state.engine, task_id, str(body.lease_id), settings.lease_seconds)
    )


@router.post("/tasks/{task_id}/result", response_model=LeaseState, responses=LEASE_ERRORS, tags=["workers"],
             dependencies=WORKER)
def post_result(task_id: TaskId, body: TaskResult, request: Request):
    """Record the task's outcome. Idempotent under the same lease; 409 under a stale one."""
    return lease_errors(lambda: tasks.record_result(
        request.app.state.engine, task_id, str(body.lease_id), body.outcome, body.result, body.error))


@router.post("/tasks/{task_id}/release", response_model=LeaseState, responses=LEASE_ERRORS, tags=["workers"],
             dependencies=WORKER)
def release(task_id: TaskId, body: LeaseRef, request: Request):
    """Hand a task back to the queue (a worker shutting down); its attempt is not counted."""
    return lease_errors(lambda: tasks.release(request.app.state.engine, task_id, str(body.lease_id)))


@router.put("/workers/{name}", status_code=204, tags=["workers"], dependencies=WORKER)
async def check_in_worker(name: Annotated[WorkerName, Path()], body: WorkerCheckIn, request: Request) -> None:
    """A worker says it is alive, with its slots, its prefetch and how many slots are busy."""
    check_ins = request.app.state.check_ins
    if check_ins.first(name):
        await run_in_threadpool(check_ins.write_now, name, body.slots, body.busy, body.prefetch)
    else:
        check_ins.note(name, body.slots, body.busy, body.prefetch)  # written with the others' within a second


@router.delete("/workers/{name}", status_code=204, tags=["workers"], dependencies=WORKER)
def worker_leaves(name: Annotated[WorkerName, Path()], request: Request) -> None:
    """A worker shuts down cleanly."""
    request.app.state.check_ins.forget(name)


@router.get("/workers", response_model=list[WorkerPublic], tags=["operators"], dependencies=CLIENT)
def list_workers(request: Request, live: bool = False):
    """Workers seen, with their slots, load and whether they are live."""
    return registry.list_workers(request.app.state.engine, master_settings().worker_ttl_seconds, live)


@router.get("/stats", response_model=Stats, tags=["operators"])
def stats(request: Request):
    """Queue depth, running tasks, live workers and their slots (what autoscalers such as KEDA read). Open,
    like /metrics."""
    return registry.stats(request.app.state.engine, master_settings().worker_ttl_seconds)


@router.get("/progress", response_model=Progress, tags=["shared"], dependencies=SHARED)
def read_progress(
    request: Request,
    order_id: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]],
                        Query(max_length=MAX_PROGRESS_ORDERS, description="Orders to read.")] = [],
    workers: Annotated[bool, Query(description="Also the live workers, with the fruits each prepares.")] = False,
):
    """Each fruit of these orders (state, worker, attempts) and, with `workers`, the live workers, read in one
    snapshot: what Shared shows of tasks and workers, which it cannot read itself."""
    settings = master_settings()
    found = task_views.progress(request.app.state.engine, list(dict.fromkeys(order_id)), workers,
                                settings.worker_ttl_seconds, settings.lease_seconds)
    return as_json(found)


@router.get("/tasks", response_model=list[TaskPublic], tags=["operators"], dependencies=SHARED)
def list_tasks(
    request: Request,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status, e.g. failed.")] = None,
    order_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
):
    """Tasks with their attempts, last error, and every failed attempt (worker, error, time)."""
    return task_views.list_tasks(request.app.state.engine, status, order_id, limit)


@router.post("/tasks/{task_id}/requeue", response_model=Requeued, tags=["operators"], dependencies=CLIENT,
             responses=errors(404, 409))
def requeue_task(task_id: TaskId, request: Request):
    """Queue a failed task again with fresh attempts; its order resumes."""
    engine = request.app.state.engine
    order_id = task_views.order_of(engine, task_id)
    if order_id is None:
        raise HTTPException(404, detail=f"task {task_id} not found")
    requeued = tasks.requeue_failed(engine, order_id, task_id)
    if not requeued:
        raise HTTPException(409, detail=f"task {task_id} has not failed")
    return Requeued(requeued=requeued)


@router.post("/orders/{order_id}/requeue", response_model=Requeued, tags=["operators"], dependencies=SHARED,
             responses=errors(404, 409))
def requeue_order(order_id: IdPath, request: Request):
    """Queue every failed task of the order again with fresh attempts; the order resumes."""
    engine = request.app.state.engine
    requeued = tasks.requeue_failed(engine, order_id)
    if not requeued:
        if not task_views.list_tasks(engine, None, order_id, limit=1):  # unknown, or not split into tasks yet
            raise HTTPException(404, detail=f"order {order_id} not found (Master has no task of it)")
        raise HTTPException(409, detail=f"order {order_id} has no failed task")
    return Requeued(requeued=requeued)
