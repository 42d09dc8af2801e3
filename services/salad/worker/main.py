"""`salad worker`: the worker loop plus its small HTTP server for probes and scraping."""

import asyncio
import contextlib

import uvicorn

from salad import __version__
from salad.core.logs import logging_config
from salad.core.settings import WorkerSettings
from salad.core.web import create_app, tune_garbage_collector
from salad.worker.metrics import METRICS
from salad.worker.runner import Runner, install_stop_handlers


class ProbeServer(uvicorn.Server):
    """uvicorn serving /healthz, /readyz and /metrics; the worker, not uvicorn, owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def serve(settings: WorkerSettings) -> None:
    runner = Runner(settings)
    install_stop_handlers(runner)
    app = create_app(METRICS, ready=lambda: runner.ready, title="salad Worker", version=__version__)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=logging_config(settings.log_level))
    server = ProbeServer(config)
    probes = asyncio.create_task(server.serve())
    tune_garbage_collector()
    try:
        await runner.run()
    finally:
        server.should_exit = True
        await probes


def main(settings: WorkerSettings) -> None:
    asyncio.run(serve(settings))
