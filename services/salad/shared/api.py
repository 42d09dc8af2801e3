"""Shared's HTTP API: the public /v1 orders API, Master's intake endpoints and the seed routes."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from salad.contracts.internal import IntakeBatch, IntakeClaim, OrderIds, OrderReports, OrderState
from salad.contracts.operators import Requeued
from salad.contracts.orders import FRUIT_PATTERN, Charts, Limits, OrderCreate, OrderPage, OrderPublic, OrderStory
from salad.contracts.seed import SeedFruit, SeedMessage
from salad.core.auth import Role, require
from salad.core.fields import MAX_ID, IdPath
from salad.core.models import OrderStatus
from salad.core.settings import shared_settings
from salad.core.web import IdempotencyKey, as_json, errors, unavailable
from salad.shared import orders

AUTH_ERRORS = errors(401, 403)
public = APIRouter(prefix="/v1/orders", tags=["orders"], dependencies=[require(Role.CLIENT)], responses=AUTH_ERRORS)
page_reads = APIRouter(prefix="/v1", tags=["orders"], dependencies=[require(Role.CLIENT)], responses=AUTH_ERRORS)
internal = APIRouter(prefix="/internal/v1", tags=["master"], dependencies=[require(Role.MASTER)],
                     responses=AUTH_ERRORS)
seed = APIRouter(tags=["seed"], dependencies=[require(Role.CLIENT, open_flag="seed_routes_open")],
                 responses=AUTH_ERRORS)


def engine_of(request: Request):
    return request.app.state.engine


def master_of(request: Request):
    return request.app.state.master


def not_found(order_id: int) -> HTTPException:
    return HTTPException(status_code=404, detail=f"order {order_id} not found")


@public.post("", status_code=201, response_model=OrderPublic)
def create_order(body: OrderCreate, request: Request, idempotency_key: IdempotencyKey = None):
    """Order a salad: one task per fruit. Retrying with the same `Idempotency-Key` creates one order."""
    try:
        order, created = orders.create_order(engine_of(request), body.fruits, body.priority, idempotency_key)
    except orders.IdempotencyConflict:
        raise RequestValidationError([{"loc": ("header", "Idempotency-Key"), "type": "value_error",
                                       "msg": "already used for a different order"}])
    location = {"Location": f"/v1/orders/{order.id}"}
    if created:  # as stored: a Master may take it any moment now
        return as_json(orders.as_placed(order), status_code=201, headers=location)
    return as_json(orders.get_order(engine_of(request), order.id, master_of(request)), status_code=201,
                   headers={**location, "Idempotent-Replayed": "true"})


@public.get("/{order_id}", response_model=OrderPublic, responses=errors(404))
def read_order(order_id: IdPath, request: Request):
    """An order's status, fruit counts by state, each fruit's state, and its completion time. When Master
    cannot be reached, the order as Shared knows it, `tasks_unavailable` set."""
    order = orders.get_order(engine_of(request), order_id, master_of(request))
    if order is None:
        raise not_found(order_id)
    return order


@public.get("/{order_id}/story", response_model=OrderStory, responses=errors(404))
def read_story(order_id: IdPath, request: Request):
    """An order and each fruit's story: queued, started and finished times, the worker, every failed attempt
    with its reason (read from Master). When Master cannot be reached, `fruits_unavailable` is set."""
    story = orders.story(engine_of(request), order_id, master_of(request))
    if story is None:
        raise not_found(order_id)
    return story


@public.post("/{order_id}/requeue", response_model=Requeued, responses=errors(404, 409, 503))
def requeue_order(order_id: IdPath, request: Request):
    """Queue a failed order's failed fruits again, with fresh attempts (at Master): the order resumes.
    409 when it has no failed fruit."""
    if orders.read(engine_of(request), order_id) is None:
        raise not_found(order_id)
    answer = master_of(request).requeue(order_id)
    if answer is None or answer.status_code >= 500:
        return unavailable("Master cannot be reached to requeue the order; retry later")
    if answer.status_code in (404, 409):
        raise HTTPException(409, detail=f"order {order_id} has no failed fruit to queue again")
    answer.raise_for_status()  # anything else (Master refusing Shared's token) is Shared's fault: a 500
    return Requeued.model_validate_json(answer.content)


@public.get("", response_model=OrderPage)
def list_orders(
    request: Request,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this status.")] = None,
    fruit: Annotated[str | None, Query(min_length=1, max_length=255, pattern=FRUIT_PATTERN,
                                       description="Only orders holding this fruit (exact name).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Start after this order id (from `next`).")] = None,
):
    """Orders, newest first, a page at a time; `fruit` searches them (it reads orders newest first until a
    page holds the fruit)."""
    items = orders.list_orders(engine_of(request), status, limit, before, fruit)
    next_page = None
    if len(items) == limit:
        query = {"limit": limit, "before": items[-1].id, "status": status.value if status else None, "fruit": fruit}
        next_page = "/v1/orders?" + urlencode({k: v for k, v in query.items() if v is not None})
    return OrderPage(items=items, next=next_page)


@page_reads.get("/limits", response_model=Limits)
def order_limits():
    """What an order may hold (SALAD_MAX_FRUITS, SALAD_MAX_FRUIT_LENGTH, the priority's range): the web page
    checks an order against them before sending it."""
    settings = shared_settings()
    return Limits(max_fruits=settings.max_fruits, max_fruit_length=settings.max_fruit_length)


@page_reads.get("/charts", response_model=Charts)
def charts(request: Request):
    """The page's charts of the last minutes: salads finished per minute with their completion time's p50 and
    p95, and queue depth and busy slots as this Shared sampled them."""
    return request.app.state.charts.charts()


@internal.post("/intake/claim", response_model=IntakeBatch)
def claim_orders(body: IntakeClaim, request: Request):
    """Lease pending orders to the calling Master, which confirms each with /accept once split."""
    lease = shared_settings().intake_lease_seconds
    return IntakeBatch(orders=orders.claim_for_intake(engine_of(request), body.limit, lease))


@internal.post("/orders/accept", response_model=list[OrderState])
def accept_orders(body: OrderIds, request: Request):
    """These orders' tasks exist at Master: they are in progress. Idempotent; unknown ids are left out."""
    return states(orders.accept(engine_of(request), body.ids))


@internal.post("/orders/reports", response_model=list[OrderState])
def report_orders(body: OrderReports, request: Request):
    """Master reports changes of orders' states (completed, failed, resumed), and orders' fruit counts.
    Idempotent, in version order; the answer lists the orders of `reports` Shared knows (the others are
    reported again later)."""
    return states(orders.apply_reports(engine_of(request), body.reports, body.progress))


def states(statuses: dict[int, str]) -> list[OrderState]:
    return [OrderState(id=order_id, status=status) for order_id, status in sorted(statuses.items())]


@seed.post("/create_task/", response_model=SeedMessage)
def seed_create_task(request: Request, fruits: Annotated[list[SeedFruit], Body(min_length=1)]):
    """Seed contract: order a salad from a list of `{"fruit": ...}`."""
    try:
        body = OrderCreate(fruits=[f.fruit for f in fruits])
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False))
    orders.create_order(engine_of(request), body.fruits)
    return {"message": "Task created"}


@seed.get("/get_tasks_to_do/", response_model=list[SeedFruit],
          responses={202: {"model": list[SeedFruit], "description": "No fruit is waiting (an empty list)."}})
def seed_get_tasks_to_do(request: Request):
    """Seed contract: fruits waiting for a Master (read-only: our Master takes them through /internal)."""
    fruits = [{"fruit": f} for f in orders.pending_fruits(engine_of(request))]
    return JSONResponse(content=fruits, status_code=200 if fruits else 202)
