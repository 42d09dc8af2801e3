"""`salad`: run the services, a local stack or a demo, and order and follow salads."""

from typing import Annotated

import typer
import uvicorn

from salad.cli import local, salads, watch
from salad.cli.common import console
from salad.core.logs import logging_config, setup_logging
from salad.core.settings import DatabaseSettings, master_settings, shared_settings, worker_settings

app = typer.Typer(help="Fruit salads prepared in parallel over REST.", no_args_is_help=True)

MASTER_GRACEFUL_SECONDS = 35  # uvicorn waits this long for open long-polls (SALAD_MAX_CLAIM_WAIT=30) on SIGTERM


# --- Services ------------------------------------------------------------------------------------
def run_server(factory: str, host: str, port: int, log_level: str, **kwargs) -> None:
    setup_logging(log_level)
    uvicorn.run(factory, factory=True, host=host, port=port, log_config=logging_config(log_level),
                proxy_headers=True, **kwargs)


@app.command()
def shared() -> None:
    """Run Shared, the public API (settings from SALAD_* variables)."""
    settings = shared_settings()
    run_server("salad.shared.app:build_app", settings.host, settings.port, settings.log_level)


@app.command()
def master() -> None:
    """Run Master, the dispatcher (settings from SALAD_* variables)."""
    settings = master_settings()
    run_server("salad.master.app:build_app", settings.host, settings.port, settings.log_level,
               timeout_graceful_shutdown=MASTER_GRACEFUL_SECONDS)


@app.command()
def worker() -> None:
    """Run a worker: prepares fruits, serves /healthz, /readyz and /metrics on SALAD_PORT."""
    from salad.worker.main import main

    settings = worker_settings()
    setup_logging(settings.log_level)
    main(settings)


@app.command()
def migrate(
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for the database to answer first (a PostgreSQL still starting).")] = 0,
) -> None:
    """Bring the database (SALAD_DATABASE_URL) to the latest schema; safe to run from many pods at once."""
    from salad.core.migrate import upgrade

    settings = DatabaseSettings()
    setup_logging(settings.log_level)
    upgrade(settings.database_url, wait_seconds=wait)
    console.print("database schema is up to date")


# --- Client and local stack ----------------------------------------------------------------------
for function in (salads.order, salads.status, salads.workers, watch.watch, salads.failed, salads.requeue,
                 local.up, local.demo):
    app.command()(function)
