"""Shared: the public API. Accepts orders, answers their status, and feeds Master over REST; what it shows of
tasks and workers it reads from Master's API."""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client.core import GaugeMetricFamily

from salad import __version__
from salad.core.auth import Tokens
from salad.core.db import make_engine
from salad.core.loops import every, retention
from salad.core.migrate import schema_is_current
from salad.core.models import OrderStatus
from salad.core.settings import shared_settings
from salad.core.web import create_app, tune_garbage_collector
from salad.shared import events, orders, page
from salad.shared.charts import SAMPLE_SECONDS, ChartData
from salad.shared.api import internal, page_reads, public, seed
from salad.shared.plain import plain_validation_errors
from salad.shared.master_reads import MasterReads
from salad.shared.metrics import METRICS, REGISTRY


class OrdersCollector:
    """`salad_orders{status}` of the open orders, read from the database at scrape time, so every replica
    agrees. Finished orders are not counted here: counting them read the whole table on every scrape, and
    `salad_orders_finished_total` already says how many finish."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def collect(self):
        family = GaugeMetricFamily("salad_orders", "Open orders, by status (pending, in_progress).",
                                   labels=["status"])
        try:
            counts = orders.count_open(self.engine)
        except Exception:
            return  # the database is down: /readyz says so; the scrape still answers
        for status in (OrderStatus.PENDING, OrderStatus.IN_PROGRESS):
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


def build_app() -> FastAPI:
    settings = shared_settings()
    engine = make_engine(settings.database_url, settings.db_pool_size)
    master = MasterReads(settings.master_url, settings.master_token)
    collector = OrdersCollector(engine)
    chart_data = ChartData(engine, master)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        REGISTRY.register(collector)
        pruning = None
        if settings.retention_seconds:
            step = retention(engine, settings, orders.prune_finished, "orders")
            pruning = asyncio.create_task(every(settings.prune_interval, step, "retention"))
        sampling = asyncio.create_task(every(SAMPLE_SECONDS, chart_data.sample, "chart samples"))
        tune_garbage_collector()
        try:
            yield
        finally:
            loops = [loop for loop in (pruning, sampling) if loop is not None]
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            REGISTRY.unregister(collector)
            master.close()
            engine.dispose()

    app = create_app(METRICS, ready=lambda: schema_is_current(engine), max_body_bytes=settings.max_body_bytes,
                     title="salad Shared", version=__version__, lifespan=lifespan)
    app.state.engine = engine
    app.state.master = master  # what Shared shows of tasks and workers, read from Master's API
    app.state.settings = settings
    app.state.charts = chart_data
    app.state.tokens = Tokens(client=settings.client_token, master=settings.master_token)
    app.add_exception_handler(RequestValidationError, plain_validation_errors)  # an order refused in plain words
    for router in (public, page_reads, internal, seed, events.router, page.router):
        app.include_router(router)
    return app
