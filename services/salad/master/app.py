"""Master: splits orders into tasks, hands them to workers, completes orders and reports them to Shared."""

import asyncio
import logging
from contextlib import asynccontextmanager, suppress

import httpx
from anyio import to_thread
from fastapi import FastAPI
from prometheus_client.core import GaugeMetricFamily

from salad import __version__
from salad.core import http
from salad.core.auth import Tokens, bearer_header
from salad.core.db import make_engine
from salad.core.loops import every, retention
from salad.core.migrate import schema_is_current
from salad.core.settings import master_settings
from salad.core.serving import when_stopping
from salad.core.web import create_app, tune_garbage_collector
from salad.master import api, registry, seed
from salad.master.background import REPORT_LINGER, SENDING_SECONDS, Intake, OutboxRelay, Reaper
from salad.master.exchanges import Exchanges
from salad.master.metrics import METRICS, REGISTRY
from salad.master.tasks import PLANNER, Completion, prune_finished
from salad.master.wakeup import Attempts, QueueSignal, listen, probe

SHARED_TIMEOUT_SECONDS = 10.0
CONFIRM_ON_STOP_SECONDS = 2.0  # for the last split orders' confirmation to Shared
CHECK_IN_FLUSH = 1.0  # seconds between writes of the workers' check-ins (registry.CheckIns)

log = logging.getLogger(__name__)


class QueueCollector:
    """Queue gauges read from the database at scrape time: every replica reports the same values."""

    def __init__(self, engine, ttl_seconds: float) -> None:
        self.engine, self.ttl_seconds = engine, ttl_seconds

    def collect(self):
        try:
            stats = registry.stats(self.engine, self.ttl_seconds)
        except Exception:
            return  # the database is down: /readyz says so; the scrape still answers
        for name, help_text, value in (
            ("salad_queue_depth", "Tasks queued, waiting for a worker.", stats.queued),
            ("salad_queue_oldest_age_seconds", "Age of the oldest queued task.", stats.oldest_queued_age_seconds),
            ("salad_tasks_running", "Tasks leased to a worker now.", stats.running),
            ("salad_workers_live", "Workers seen within the worker TTL.", stats.live_workers),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)


def flush_check_ins(check_ins: registry.CheckIns, ttl_seconds: float):
    async def step() -> bool:
        await to_thread.run_sync(check_ins.flush, ttl_seconds)
        return False

    return step


def build_app() -> FastAPI:
    settings = master_settings()
    engine = make_engine(settings.database_url, settings.db_pool_size, planner=PLANNER)
    collector = QueueCollector(engine, settings.worker_ttl_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        signal, order_placed = QueueSignal(), asyncio.Event()
        order_completed = asyncio.Event()  # set by an exchange that completes orders: wakes the relay
        app.state.signal, app.state.attempts = signal, Attempts()
        check_ins = app.state.check_ins
        headers = bearer_header(settings.master_token)
        async_shared = http.session(SHARED_TIMEOUT_SECONDS, headers)
        sync_shared = httpx.Client(base_url=settings.shared_url, timeout=SHARED_TIMEOUT_SECONDS, headers=headers)
        intake = Intake(engine, async_shared, settings, signal)
        loop = asyncio.get_running_loop()
        relay = OutboxRelay(engine, sync_shared, settings.outbox_interval,
                            on_reported=lambda order_ids: loop.call_soon_threadsafe(intake.reported, order_ids))

        def completed(reports: list[Completion]) -> None:
            relay.hand(reports)
            order_completed.set()

        app.state.exchanges.report_to(completed, SENDING_SECONDS)
        loops = [
            every(settings.intake_interval, intake.step, "intake", wake=order_placed),
            every(settings.intake_interval, intake.accept_step, "intake confirmation"),
            every(settings.reaper_interval, Reaper(engine, signal, settings.lease_seconds).step, "reaper"),
            every(settings.outbox_interval, relay.step, "outbox", wake=order_completed, linger=REPORT_LINGER),
            every(CHECK_IN_FLUSH, flush_check_ins(check_ins, settings.worker_ttl_seconds),
                  "worker check-ins"),
        ]
        if settings.retention_seconds:
            pruning = retention(engine, settings, prune_finished, "orders' tasks")
            loops.append(every(settings.prune_interval, pruning, "retention"))
        loops += [listen(settings.database_url, signal, order_placed), probe(signal)]
        running = [asyncio.create_task(loop) for loop in loops]
        REGISTRY.register(collector)
        tune_garbage_collector()
        forget_signal = when_stopping(signal.stop)  # long-polls answered at once, not when they run out
        try:
            yield
        finally:
            forget_signal()
            REGISTRY.unregister(collector)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            with suppress(Exception):  # else Shared hands them out again after their intake lease; none is lost
                await asyncio.wait_for(intake.confirm_all(), CONFIRM_ON_STOP_SECONDS)
            with suppress(Exception):  # else another replica sends them later (again: Shared ignores it)
                await to_thread.run_sync(relay.finish)
            with suppress(Exception):  # else the workers' next check-ins, within seconds, say it again
                await to_thread.run_sync(check_ins.flush, settings.worker_ttl_seconds)
            await async_shared.close()
            sync_shared.close()
            engine.dispose()

    app = create_app(METRICS, ready=lambda: schema_is_current(engine), max_body_bytes=settings.max_body_bytes,
                     title="salad Master", version=__version__, lifespan=lifespan)
    app.state.engine = engine
    app.state.exchanges = Exchanges(engine, settings.lease_seconds, settings.task_timeout_seconds)
    app.state.check_ins = registry.CheckIns(engine)
    app.state.settings = settings
    app.state.tokens = Tokens(client=settings.client_token, worker=settings.worker_token,
                              master=settings.master_token)
    app.include_router(api.router)
    app.include_router(seed.router)
    return app
