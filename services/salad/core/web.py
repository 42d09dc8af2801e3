"""What every service's FastAPI app has: clear 4xx errors, health probes, /metrics, request metrics."""

import gc
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from psycopg import errors as pg_errors
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salad.core.metrics import ServiceMetrics


class ErrorBody(BaseModel):
    """The body of every error answer."""

    message: str
    detail: Any = None


def errors(*codes: int) -> dict[int, dict]:
    """OpenAPI `responses` for these error codes."""
    return {code: {"model": ErrorBody} for code in codes}


# A client's name for one request, so that retrying it does what the first did once (printable ASCII).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                             pattern=r"^[\x21-\x7e]+$")]
UNMATCHED_ROUTE = "unmatched"  # 404s share one label value, so random paths cannot explode the series
RETRY_AFTER_SECONDS = 2  # told to callers while the database is unreachable
# salad's metrics are Prometheus's (`/metrics`). FastAPI's own OpenTelemetry, on by default, asks the global
# providers on every request whether anyone configured them: 5.6 % of a busy Master's samples (py-spy, fleet
# run). With it off, an operator's own OpenTelemetry providers get no spans or metrics from FastAPI.
NO_OPENTELEMETRY = {"tracing": False, "metrics": False, "logs": False}
YOUNG_COLLECTION_THRESHOLD = 50_000  # see tune_garbage_collector


def as_json(answer: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An answer serialised once, for routes that return many items: returned as a model, FastAPI would dump
    it, validate it again against the route's response model, then serialise it (the route's response_model
    still documents it)."""
    return Response(answer.model_dump_json(), status_code, headers, media_type="application/json")


def describe_validation_error(error: dict) -> str:
    """`body.fruits.0: String should have at most 64 characters` — the field first, then the problem."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid")


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    message = "; ".join(describe_validation_error(e) for e in errors)
    return JSONResponse(status_code=422, content={"message": message, "detail": detail})


def unavailable(message: str, detail: str | None = None,
                retry_after: int = RETRY_AFTER_SECONDS) -> JSONResponse:
    """A retryable 503: the caller is told when to try again."""
    return JSONResponse(status_code=503, headers={"Retry-After": str(retry_after)},
                        content={"message": message, "detail": detail})


async def database_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    """The database is down or unreachable: a retryable 503, never a 500."""
    return unavailable("the database is unavailable; retry later", type(exc).__name__)


# The schema is not there yet (the service started before `salad migrate` ran) or is behind this code.
NOT_MIGRATED = (pg_errors.UndefinedTable, pg_errors.UndefinedColumn, pg_errors.UndefinedObject)


async def programming_error_handler(request: Request, exc: ProgrammingError) -> Response:
    """A missing table or column is a 503 while migrations run, never a 500; other errors stay 500s."""
    if isinstance(exc.orig, NOT_MIGRATED):
        return unavailable("the database schema is not migrated yet; retry later", type(exc.orig).__name__)
    raise exc


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> HTTPException:
        return HTTPException(413, detail=f"request body larger than {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and length.isdigit() and not chunked:
            if int(length) > self.max_bytes:
                response = JSONResponse(status_code=413, content={"message": self.too_large().detail})
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server reads no more than the length announced
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self.too_large()
            return message

        await self.app(scope, counting_receive, send)


def held_open(request: Request) -> None:
    """Mark a request held open on purpose (a long-poll that waits for work, an event stream): its duration is
    the wait, not the time the service took to answer, so RequestMetrics counts it but leaves it out of the
    latency histogram, whose p95 would otherwise be the long-poll's wait."""
    request.state.held_open = True


class RequestMetrics:
    """Counts and times every request by route template (pure ASGI: cheaper than BaseHTTPMiddleware); a
    request held open (see held_open) is counted, not timed."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.service = metrics.service
        self.requests, self.latency = metrics.http_requests, metrics.http_latency
        self.counters: dict[tuple[str, ...], Any] = {}  # (service, route, method, status): see `series`
        self.timers: dict[tuple[str, ...], Any] = {}  # (service, route, method)

    @staticmethod
    def series(metric, cache: dict, labels: tuple):
        """`metric`'s series of these labels, looked up once: `labels()` on every request cost as much as the
        rest of this middleware. Made on first use only: a series never observed would show as NaN."""
        if (found := cache.get(labels)) is None:
            found = cache[labels] = metric.labels(*labels)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})  # the request's state, where held_open leaves its mark

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            method = scope["method"]
            self.series(self.requests, self.counters, (self.service, route, method, str(status))).inc()
            if not state.get("held_open"):
                self.series(self.latency, self.timers, (self.service, route, method)).observe(
                    time.perf_counter() - started)


def tune_garbage_collector() -> None:
    """Hide what start-up allocated (modules, the app, pools: most of the heap) from the garbage collector,
    for good: else each full collection walks all of it, pausing a service in the middle of salads.

    Then collect the youngest objects only once YOUNG_COLLECTION_THRESHOLD more objects the collector tracks
    were made than freed (CPython 3.11's default: 700): reference counting frees nearly all of a request's
    objects anyway. With a thousand workers' requests in flight, the default ran a young collection every 6
    requests and a full one every 700 in each Master, and the young ones freed almost nothing (138 objects in
    968 collections). The higher threshold cut a busy Master's CPU per task by a quarter, with the same peak
    memory in short fleet runs (bench/RESULTS.md, run U)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


class ProbeStatus(BaseModel):
    status: str


def add_probes(app: FastAPI, ready: Callable[[], bool], registry: CollectorRegistry) -> None:
    """`/healthz` (the process runs), `/readyz` (it can do its work), `/metrics` (Prometheus). Open to all."""

    @app.get("/healthz", tags=["probes"], response_model=ProbeStatus)
    def healthz() -> dict:
        """Liveness: 200 while the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], response_model=ProbeStatus, responses={503: {"model": ProbeStatus}})
    def readyz() -> JSONResponse:
        """Readiness: 200 when the service can serve (Shared, Master: the database answers and its schema is
        at this code's revision; a worker: Master answers); 503 with Retry-After otherwise."""
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                            content={"status": "not ready"})

    @app.get("/metrics", tags=["probes"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> Response:
        """Prometheus metrics in the text exposition format: this service's own, nothing of the others'."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every error body has `message` (and `detail`, as FastAPI clients expect)."""
    message = exc.detail if isinstance(exc.detail, str) else "; ".join(
        describe_validation_error(e) for e in exc.detail)
    return JSONResponse(status_code=exc.status_code, headers=exc.headers,
                        content={"message": message, "detail": exc.detail})


def create_app(metrics: ServiceMetrics, ready: Callable[[], bool], max_body_bytes: int | None = None,
               **fastapi_kwargs) -> FastAPI:
    app = FastAPI(responses=errors(400, 413, 503) if max_body_bytes else {}, telemetry=NO_OPENTELEMETRY,
                  **fastapi_kwargs)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for database_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(database_error, database_unavailable_handler)
    app.add_exception_handler(ProgrammingError, programming_error_handler)
    if max_body_bytes:
        app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    add_probes(app, ready, metrics.registry)
    return app
