"""Live progress: `GET /v1/events` streams the dashboard as server-sent events; `GET /v1/dashboard` reads it.

Each stream looks at the dashboard every SNAPSHOT_INTERVAL and sends an event only when it changed; the
event id is a digest of its content, so a client that reconnects (to this replica or another) with an
up-to-date `Last-Event-ID` gets no repeat. Streams in one process share one read per interval (of the
database, and one call to Master).
A stream ends when its client leaves, and at once on SIGTERM (sse-starlette watches uvicorn's exit
signal), so Shared still stops within seconds while pages are open; their EventSource reconnects.
Both need the client token; EventSource cannot send headers, so `?access_token=` is accepted here too.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from sse_starlette import EventSourceResponse, ServerSentEvent

from salad.contracts.orders import Dashboard
from salad.core.auth import Credentials, Role, check
from salad.core.web import errors
from salad.shared.dashboard import Snapshot, read_dashboard
from salad.shared.master_reads import MasterReads

SNAPSHOT_INTERVAL = 0.5  # seconds between looks at the database, per process
# A stream waking every SNAPSHOT_INTERVAL must find the shared read older than the cache's limit, or it would
# send a snapshot up to twice the interval old; so the cache keeps a read a little less long.
CACHE_MAX_AGE = SNAPSHOT_INTERVAL * 0.8
HEARTBEAT_SECONDS = 15  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 1000  # the client reconnects this long after the stream ends or breaks

ACCESS_TOKEN_HELP = "The client token, for EventSource (which cannot send headers); else use Authorization."

log = logging.getLogger(__name__)


async def client_token(  # async: checked on the event loop, as `require` explains
    request: Request,
    credentials: Credentials,
    access_token: Annotated[str | None, Query(description=ACCESS_TOKEN_HELP)] = None,
) -> None:
    """A client token, from the Authorization header or the `access_token` query parameter (RFC 6750 2.3)."""
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    check(request, credentials, Role.CLIENT)


router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Depends(client_token)],
                   responses=errors(401, 403))


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
                             "description": "`snapshot` events, each a JSON dashboard (see /v1/dashboard)."}})
async def events(request: Request, last_event_id: Annotated[str | None, Header()] = None):
    """Live dashboard: a `snapshot` event now and whenever open orders, workers or recent salads change."""
    stream = snapshot_events(snapshots_of(request), last_event_id)
    return EventSourceResponse(stream, ping=HEARTBEAT_SECONDS, sep="\n")


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(request: Request):
    """The dashboard once: open orders fruit by fruit, live workers, salads completed, recent times."""
    return Response((await snapshots_of(request).get()).json, media_type="application/json")
