"""Live progress: `GET /v1/events` streams the dashboard as server-sent events; `GET /v1/dashboard` reads it.

Each stream looks at the dashboard every SNAPSHOT_INTERVAL and sends an event only when it changed; the
event id is a digest of its content, so a client that reconnects (to this replica or another) with an
up-to-date `Last-Event-ID` gets no repeat. Streams in one process share one read per interval (of the
database, and one call to Master).
A stream ends when its client leaves, and at once on SIGTERM (sse-starlette watches uvicorn's exit
signal), so Shared still stops within seconds while pages are open; their EventSource reconnects.
Both need the client token; EventSource cannot send headers, so `?access_token=` is accepted here too.
Each open stream holds a connection, a file descriptor and its buffers, so a process serves at most SALAD_MAX_EVENT_STREAMS at once, and at most
SALAD_MAX_EVENT_STREAMS_PER_TOKEN opened with one token; past them a stream gets 503 with Retry-After.
"""

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from sse_starlette import EventSourceResponse, ServerSentEvent

from salad.contracts.orders import Dashboard
from salad.core.auth import Credentials, Role, check
from salad.core.web import errors, held_open, unavailable
from salad.shared.dashboard import Snapshot, read_dashboard
from salad.shared.master_reads import MasterReads

SNAPSHOT_INTERVAL = 0.5  # seconds between looks at the database, per process
# A stream waking every SNAPSHOT_INTERVAL must find the shared read older than the cache's limit, or it would
# send a snapshot up to twice the interval old; so the cache keeps a read a little less long.
CACHE_MAX_AGE = SNAPSHOT_INTERVAL * 0.8
HEARTBEAT_SECONDS = 15  # a `keepalive` event this often keeps proxies from closing an idle stream
KEEPALIVE_DATA = f'{{"every": {HEARTBEAT_SECONDS}}}'
RETRY_MS = 1000  # the client reconnects this long after the stream ends or breaks
STREAMS_RETRY_AFTER = 5  # seconds told to a caller refused a stream: a place frees when a client leaves

ACCESS_TOKEN_HELP = "The client token, for EventSource (which cannot send headers); else use Authorization."

log = logging.getLogger(__name__)


async def client_token(  # async: checked on the event loop, as `BearerOf` explains
    request: Request,
    credentials: Credentials,
    access_token: Annotated[str | None, Query(description=ACCESS_TOKEN_HELP)] = None,
) -> str | None:
    """A client token, from the Authorization header or the `access_token` query parameter (RFC 6750 2.3).
    Returns the token presented, if any."""
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    check(request, credentials, Role.CLIENT)
    return credentials.credentials if credentials is not None else None


router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Depends(client_token)],
                   responses=errors(401, 403))


Caller = tuple[str, str]  # ("token", a digest of it) or ("address", the client's host)


class StreamLimits:
    """The event streams open in this process, in all and by caller. Used on the event loop alone."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total, self.per_caller = total, per_caller
        self.open = 0
        self.by_caller: Counter[Caller] = Counter()

    def refusal(self, caller: Caller) -> str | None:
        """Why a new stream of `caller` may not open now (naming the limit), or None."""
        if self.by_caller[caller] >= self.per_caller:
            return (f"{self.by_caller[caller]} event streams are open with this {caller[0]}, the most "
                    "SALAD_MAX_EVENT_STREAMS_PER_TOKEN allows; close one or retry later")
        if self.open >= self.total:
            return (f"{self.open} event streams are open on this Shared, the most SALAD_MAX_EVENT_STREAMS "
                    "allows; retry later")
        return None

    def take(self, caller: Caller) -> Callable[[], None]:
        """Count a stream of `caller`; returns what gives its place back."""
        self.open += 1
        self.by_caller[caller] += 1

        def give_back() -> None:
            self.open -= 1
            self.by_caller[caller] -= 1
            if not self.by_caller[caller]:
                del self.by_caller[caller]

        return give_back


def stream_limits_of(request: Request) -> StreamLimits:
    """The app's stream counts, made on first use."""
    state = request.app.state
    if getattr(state, "stream_limits", None) is None:
        settings = state.settings
        state.stream_limits = StreamLimits(settings.max_event_streams, settings.max_event_streams_per_token)
    return state.stream_limits


def caller_of(request: Request, token: str | None) -> Caller:
    """Whom a stream counts against: its token (as a digest: the token is kept nowhere), else, with
    authentication off and no token sent, its address."""
    if token:
        return "token", hashlib.sha256(token.encode()).hexdigest()
    return "address", request.client.host if request.client else "unknown"


class CountedStream(EventSourceResponse):
    """An event stream that gives its place back when it ends, however it ends (its client left, Shared
    stops, an error)."""

    def __init__(self, *args, give_back: Callable[[], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.give_back = give_back

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.give_back()


class SnapshotCache:
    """The latest snapshot, read at most once per `max_age` seconds however many streams ask."""

    def __init__(self, engine, master: MasterReads | None, max_age: float = CACHE_MAX_AGE) -> None:
        self.engine, self.master = engine, master
        self.max_age = max_age
        self.lock = asyncio.Lock()
        self.value: Snapshot | None = None
        self.read_at = 0.0

    async def get(self) -> Snapshot:
        async with self.lock:
            if self.value is None or time.monotonic() - self.read_at >= self.max_age:
                self.value = Snapshot.of(await run_in_threadpool(read_dashboard, self.engine, self.master))
                self.read_at = time.monotonic()
            return self.value


def snapshots_of(request: Request) -> SnapshotCache:
    """The app's cache, made on first use."""
    state = request.app.state
    if getattr(state, "snapshots", None) is None:
        state.snapshots = SnapshotCache(state.engine, state.master)
    return state.snapshots


async def snapshot_events(cache: SnapshotCache, last_sent: str | None) -> AsyncIterator[ServerSentEvent]:
    healthy = True
    while True:
        try:
            snapshot = await cache.get()
        except Exception as exc:  # noqa: BLE001 - the database is away: keep the stream, try again next time
            if healthy:
                log.warning("dashboard snapshot failed: %s", exc)
            healthy, snapshot = False, None
        else:
            healthy = True
        if snapshot is not None and snapshot.id != last_sent:
            yield ServerSentEvent(data=snapshot.json, event="snapshot", id=snapshot.id, retry=RETRY_MS)
            last_sent = snapshot.id
        await asyncio.sleep(SNAPSHOT_INTERVAL)


@router.get("/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`snapshot` events, each a JSON dashboard (see /v1/dashboard)."},
                       **errors(503)})
async def events(request: Request, token: Annotated[str | None, Depends(client_token)],
                 last_event_id: Annotated[str | None, Header()] = None):
    """Live dashboard: a `snapshot` event now and whenever open orders, workers or recent salads change.
    503 with Retry-After while this Shared has as many streams open as it serves, in all or for the token."""
    limits, caller = stream_limits_of(request), caller_of(request, token)
    refusal = limits.refusal(caller)
    if refusal is not None:
        return unavailable(refusal, retry_after=STREAMS_RETRY_AFTER)
    stream = snapshot_events(snapshots_of(request), last_event_id)
    held_open(request)  # a stream lasts as long as its client watches: no latency to measure
    return CountedStream(stream, ping=HEARTBEAT_SECONDS, ping_message_factory=keepalive, sep="\n",
                         give_back=limits.take(caller))


def keepalive() -> ServerSentEvent:
    """The heartbeat, as an event rather than a comment: EventSource hides comments, and the page marks itself
    stale when neither a snapshot nor this came within `every` seconds. No id: a reconnecting client's
    Last-Event-ID stays its last snapshot's."""
    return ServerSentEvent(data=KEEPALIVE_DATA, event="keepalive")


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(request: Request):
    """The dashboard once: open orders fruit by fruit, live workers, salads completed, recent times."""
    return Response((await snapshots_of(request).get()).json, media_type="application/json")
