"""Background loops of the services: run a step forever, back off on errors; retention of finished rows."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime, timedelta

from anyio import to_thread
from sqlalchemy.engine import Engine

from salad.core.db import utcnow
from salad.core.settings import DatabaseSettings

MAX_BACKOFF = 30.0  # seconds between retries of a failing step
FINISH_ON_STOP = 5.0  # seconds a step in flight gets to finish when its loop is stopped

log = logging.getLogger(__name__)


async def every(interval: float, step, name: str, wake: asyncio.Event | None = None, linger: float = 0.0,
                finish_on_stop: float = FINISH_ON_STOP) -> None:
    """Run `step` forever; when it reports a full batch, run again at once, and when `wake` is set, early:
    `linger` seconds later, so that the wakes of that while share one step. Errors are logged, not fatal, and
    back off.

    Cancelled (the service stopping), the loop lets a step in flight finish, for up to `finish_on_stop`
    seconds, before it ends: a step cut in the middle leaves its work half done, as a split committed in its
    thread whose tasks, leased to claims that left, are then neither handed out nor released.
    """
    failures = 0
    while True:
        if wake is not None:
            wake.clear()
        try:
            busy = await finished_before_stop(step(), finish_on_stop)
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            busy = False
            log.warning("%s failed (%d in a row): %s", name, failures, exc)
        if busy:
            continue
        delay = min(MAX_BACKOFF, interval * 2 ** min(failures, 6))
        if wake is None or failures:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(wake.wait(), delay)
            except TimeoutError:
                continue
            await asyncio.sleep(linger)


async def finished_before_stop(step: Awaitable[bool], within: float) -> bool:
    """Await `step`; when the caller is cancelled meanwhile, give the step `within` seconds to finish first."""
    running = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with suppress(Exception):
            await asyncio.wait_for(running, within)  # cancels it if it takes longer
        raise


def retention(engine: Engine, settings: DatabaseSettings,
              prune: Callable[[Engine, datetime, int], int], what: str) -> Callable[[], Awaitable[bool]]:
    """A loop step deleting, a batch per transaction, the finished rows older than `retention_seconds`.

    Small transactions keep row locks short and the WAL steady while the service keeps working; a full
    batch runs the step again at once.
    """

    async def step() -> bool:
        older_than = utcnow() - timedelta(seconds=settings.retention_seconds)
        pruned = await to_thread.run_sync(prune, engine, older_than, settings.prune_batch)
        if pruned:
            log.info("retention: deleted %d %s finished before %s", pruned, what, older_than.isoformat())
        return pruned == settings.prune_batch

    return step
