"""`salad`: run the services, a local stack or a demo, and order and follow salads."""

import sys
from typing import Annotated

import typer
from uvicorn.config import STARTUP_FAILURE

from salad import __version__
from salad.cli import local, salads, watch
from salad.cli.common import EXIT_CODES, console
from salad.cli.usage import SaladCommand, SaladGroup
from salad.core.limits import raise_open_files_limit
from salad.core.logs import logging_config, setup_logging
from salad.core.serving import serve
from salad.core.settings import DatabaseSettings, master_settings, shared_settings, worker_settings

app = typer.Typer(
    cls=SaladGroup, no_args_is_help=True, rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Fruit salads prepared in parallel over REST.",
    epilog="Start with: salad up (a local stack), then salad order apple banana kiwi --wait, or salad demo. "
           "Run salad COMMAND -h for a command's options and examples.\n\n" + EXIT_CODES)
MASTER_GRACEFUL_SECONDS = 35  # at most, uvicorn waits this long for requests in flight on SIGTERM (Master answers
# its long-polls at once: salad.core.serving; this bounds the rest, a split or an exchange in a slow database)


def show_version(value: bool) -> None:
    if value:
        console.print(f"salad {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=show_version,
                                          help="Print salad's version and exit.")] = False,
) -> None:
    """Fruit salads prepared in parallel over REST."""


# --- Commands, in the order --help lists them ------------------------------------------------------
for panel, functions in (("Local stack", (local.up, local.demo)),
                         ("Salads", (salads.order, salads.status, watch.watch, salads.workers, salads.failed,
                                     salads.requeue))):
    for function in functions:
        app.command(cls=SaladCommand, rich_help_panel=panel)(function)
SERVICES = "Services (what the containers run)"


def run_server(factory: str, host: str, port: int, log_level: str, **kwargs) -> None:
    setup_logging(log_level)
    raise_open_files_limit()
    # access_log off: the logging config drops uvicorn.access anyway, but uvicorn would still format each
    # request's log arguments before the logger declines them
    if not serve(factory, host=host, port=port, log_config=logging_config(log_level), proxy_headers=True,
                 access_log=False, **kwargs):
        sys.exit(STARTUP_FAILURE)


@app.command(cls=SaladCommand, rich_help_panel=SERVICES)
def shared() -> None:
    """Run Shared, the public API (settings from SALAD_* variables).

    Examples:

        SALAD_DATABASE_URL=postgresql://salad:secret@db/salad salad shared
    """
    settings = shared_settings()
    run_server("salad.shared.app:build_app", settings.host, settings.port, settings.log_level,
               timeout_keep_alive=settings.keep_alive_seconds)


@app.command(cls=SaladCommand, rich_help_panel=SERVICES)
def master() -> None:
    """Run Master, the dispatcher (settings from SALAD_* variables).

    Examples:

        SALAD_SHARED_URL=http://shared:8001 salad master
    """
    settings = master_settings()
    run_server("salad.master.app:build_app", settings.host, settings.port, settings.log_level,
               timeout_keep_alive=settings.keep_alive_seconds,
               timeout_graceful_shutdown=MASTER_GRACEFUL_SECONDS)


@app.command(cls=SaladCommand, rich_help_panel=SERVICES)
def worker() -> None:
    """Run a worker: prepares fruits, serves /healthz, /readyz and /metrics on SALAD_PORT.

    With no SALAD_MASTER_URL or SALAD_WORKER_TOKEN set and a local stack found (.salad/ here or above, or
    SALAD_HOME), it joins that stack: Master's URL, the worker token, the stack's pace and a free port come
    from its stack.json.

    Examples:

        salad worker
        SALAD_WORKER_NAME=big SALAD_SLOTS=8 salad worker
    """
    from salad.worker.main import main

    local.join_local_stack()
    settings = worker_settings()
    setup_logging(settings.log_level)
    main(settings)


@app.command(cls=SaladCommand, rich_help_panel=SERVICES)
def migrate(
    wait: Annotated[float, typer.Option(
        metavar="SECONDS", help="Wait this long for the database to answer first (a PostgreSQL still starting).",
    )] = 0,
) -> None:
    """Bring the database (SALAD_DATABASE_URL) to the latest schema; safe to run from many pods at once.

    Examples:

        salad migrate --wait 60
    """
    from salad.core.migrate import upgrade

    settings = DatabaseSettings()
    setup_logging(settings.log_level)
    upgrade(settings.database_url, wait_seconds=wait)
    console.print("database schema is up to date")

