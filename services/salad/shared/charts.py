"""The page's small charts of the last minutes: salads finished per minute with their completion time's p50
and p95, read from Shared's orders through the completed_at index (the cost grows with the salads of the
window, not with all finished orders, and a process reads them at most once per READ_EVERY); and queue depth and
busy slots, sampled from Master's stats every SAMPLE_SECONDS into a ring holding the window (constant memory,
one small call per interval, whether anyone watches or not)."""

import time
from collections import deque
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from salad.contracts.orders import Charts, LoadSample, MinuteFigures
from salad.core.db import autocommit, utcnow
from salad.shared.master_reads import MasterReads
from salad.shared.sql import SQL

WINDOW_MINUTES = 10
SAMPLE_SECONDS = 5.0
READ_EVERY = 1.0  # seconds a process answers the same figures of finished salads, however many pages ask


class ChartData:
    """The load samples of this process, and its latest read of finished salads."""

    def __init__(self, engine: Engine, master: MasterReads) -> None:
        self.engine, self.master = engine, master
        self.load: deque[LoadSample] = deque(maxlen=int(WINDOW_MINUTES * 60 / SAMPLE_SECONDS))
        self.minutes: list[MinuteFigures] = []
        self.read_at = float("-inf")

    async def sample(self) -> bool:
        """One sample of the queue and the slots (a step of core.loops.every), from Master's stats: busy slots
        are its running tasks (see LoadSample.busy). None while Master is away, or answers without slots (a
        Master older than Shared, during an upgrade). Not from the list of live workers, which with a
        thousand of them cost Master a tenth of its idle time, every few seconds, to be summed here."""
        stats = await run_in_threadpool(self.master.stats)
        if stats is not None:
            self.load.append(LoadSample(at=utcnow(), queued=stats.queued, busy=stats.running,
                                        slots=stats.slots))
        return False

    def finished_by_minute(self) -> list[MinuteFigures]:
        if time.monotonic() - self.read_at >= READ_EVERY:
            since = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=WINDOW_MINUTES - 1)
            with autocommit(self.engine) as connection:
                rows = connection.execute(SQL.finished_by_minute, dict(since=since)).all()
            self.minutes = [MinuteFigures.model_validate(row._mapping) for row in rows]
            self.read_at = time.monotonic()
        return self.minutes

    def charts(self) -> Charts:
        return Charts(now=utcnow(), window_minutes=WINDOW_MINUTES, minutes=self.finished_by_minute(),
                      load=list(self.load))
