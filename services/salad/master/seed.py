"""The seed document's Master routes, as thin adapters over the task life cycle."""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, update
from sqlmodel import Session

from salad.contracts.seed import SeedAssignment, SeedCommand, SeedMessage, SeedResult, SeedWorker
from salad.core.auth import Role, require
from salad.core.db import transaction
from salad.core.models import OrderStatus, Salad, Task, TaskStatus
from salad.core.settings import master_settings
from salad.core.web import IdempotencyKey, errors
from salad.master import tasks

router = APIRouter(tags=["seed"], responses=errors(401, 403))
SALAD_READY = "The salad is ready! Enjoy!"


@router.post("/send_task", response_model=SeedAssignment, responses={202: {"model": SeedMessage}}, dependencies=[require(Role.WORKER, open_flag="seed_routes_open")])
def send_task(body: SeedWorker, request: Request):
    """Seed contract: one task for the named worker, or 202 "No more tasks".

    The seed's worker never heartbeats, so its lease also covers the fruit's whole execution time.
    """
    settings, engine = master_settings(), request.app.state.engine
    leased = tasks.claim(engine, body.nom_worker, 1, settings.lease_seconds, settings.task_timeout_seconds)
    if not leased:
        return JSONResponse(status_code=202, content={"message": "No more tasks"})
    task = leased[0]
    tasks.heartbeat_lease(engine, task.id, task.lease_id, settings.lease_seconds + task.execution_time)
    return {"id": task.id, "fruit": task.fruit, "execution_time": task.execution_time}


@router.post("/result", response_model=SeedMessage, responses=errors(404, 409), dependencies=[require(Role.WORKER, open_flag="seed_routes_open")])
def result(body: SeedResult, request: Request):
    """Seed contract: the result of a task sent by /send_task, named by task id and worker."""
    engine = request.app.state.engine
    with transaction(engine) as session:
        task = session.get(Task, body.task.id)
        if task is None:
            raise HTTPException(404, detail=f"task {body.task.id} not found")
        if task.worker != body.task.nom_worker or task.lease_id is None:
            raise HTTPException(409, detail=f"task {body.task.id} is not leased to {body.task.nom_worker}")
        lease_id = task.lease_id
    try:
        tasks.record_result(engine, body.task.id, lease_id, TaskStatus.SUCCEEDED, body.result, None)
    except tasks.StaleLease:
        raise HTTPException(409, detail=f"task {body.task.id} is not leased to {body.task.nom_worker}")
    return {"message": "Result received"}


@router.get("/send_command", response_model=SeedCommand, responses={202: {"model": SeedMessage}}, dependencies=[require(Role.CLIENT, open_flag="seed_routes_open")])
def send_command(request: Request, idempotency_key: IdempotencyKey = None):
    """Seed contract: hand out the next salad made ready since the last call, once.

    It is marked handed out before the answer leaves: an answer lost on the way (Master killed, connection
    cut) loses that salad's command. A request with an `Idempotency-Key`, retried with it, gets the salad it
    handed out again (the seed's client sends none).
    """
    with transaction(request.app.state.engine) as session:
        earlier = handed_out_under(session, idempotency_key) if idempotency_key is not None else None
        row = earlier or hand_out_next(session, idempotency_key)
    if row is None:
        return JSONResponse(status_code=202, content={"message": "No command"})
    return JSONResponse({"message": SALAD_READY, "preparation_time": row.preparation_time},
                        headers={"Idempotent-Replayed": "true"} if earlier else None)


def handed_out_under(session: Session, key: str):
    """The salad handed out under this key, if any. Requests with one key take turns (a transaction lock)."""
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
    return session.execute(select(Salad.preparation_time).where(Salad.seed_request_key == key)).one_or_none()


def hand_out_next(session: Session, key: str | None):
    """The salad completed first among those not handed out yet, marked handed out (under `key`)."""
    ready = (
        select(Salad.order_id).where(Salad.status == OrderStatus.COMPLETED, Salad.seed_collected.is_(False))
        .order_by(Salad.finished_at).limit(1).with_for_update(skip_locked=True)
    )
    return session.execute(
        update(Salad).where(Salad.order_id == ready.scalar_subquery())
        .values(seed_collected=True, seed_request_key=key).returning(Salad.preparation_time)
    ).one_or_none()
