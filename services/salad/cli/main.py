"""`salad`: run the services, a local stack or a demo, and order and follow salads."""

import json
import random
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from salad.cli import client, watch
from salad.cli.common import (
    TOKEN_FILE,
    JsonOutput,
    MasterUrl,
    SharedUrl,
    Token,
    console,
    default_token,
    fail,
    service_errors,
    show,
)
from salad.cli.stack import LocalStack
from salad.core.db import sqlalchemy_url
from salad.core.embedded import EmbeddedPostgres
from salad.core.logs import logging_config, setup_logging
from salad.core.settings import DatabaseSettings, master_settings, shared_settings, worker_settings

app = typer.Typer(help="Fruit salads prepared in parallel over REST.", no_args_is_help=True)

FRUITS = ["apple", "banana", "kiwi", "mango", "orange", "pear", "pineapple", "grape", "cherry", "melon",
          "papaya", "peach", "plum", "strawberry", "lychee", "passion fruit"]
MASTER_GRACEFUL_SECONDS = 35  # uvicorn waits this long for open long-polls (SALAD_MAX_CLAIM_WAIT=30) on SIGTERM
LOCAL_POSTGRES = Path(".salad/postgres")  # `salad up`'s embedded PostgreSQL cluster, kept between runs

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


# --- Client --------------------------------------------------------------------------------------
@app.command()
def order(
    fruits: Annotated[list[str], typer.Argument(help="The fruits of the salad.")],
    wait: Annotated[bool, typer.Option(help="Follow the order until it is ready.")] = False,
    priority: int = 0,
    timeout: Annotated[float | None, typer.Option(help="With --wait: give up after this many seconds.")] = None,
    shared_url: SharedUrl = "http://127.0.0.1:8001",
    token: Token = None,
    as_json: JsonOutput = False,
) -> None:
    """Order a salad."""
    token = token or default_token()
    with service_errors():
        placed = client.order(shared_url, token, fruits, priority)
        if not wait:
            print(json.dumps(placed)) if as_json else console.print(f"order [bold]{placed['id']}[/bold] placed")
            return
        final = client.follow(shared_url, token, placed["id"], Console(quiet=as_json), timeout)
    report(final, as_json)


def report(final: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(final))
    elif final["status"] == "completed":
        console.print(f"The salad is ready! Enjoy! order {final['id']}: {len(final['fruits'])} fruits "
                      f"in [bold]{final['preparation_time']:.2f} s[/bold]")
    else:
        console.print(f"[red]order {final['id']} failed:[/red] {final['failure_reason']}")
    if final["status"] != "completed":
        raise typer.Exit(1)


@app.command()
def status(order_id: int, shared_url: SharedUrl = "http://127.0.0.1:8001", token: Token = None,
           as_json: JsonOutput = False) -> None:
    """Show an order: its status, each fruit's state and the completion time."""
    with service_errors():
        current = client.status(shared_url, token or default_token(), order_id)
    title = f"order {order_id}: {current['status']}" + (
        f" in {current['preparation_time']:.2f} s" if current["preparation_time"] else "")
    show(current, as_json, title, ("#", "fruit", "status", "worker", "attempts"),
         ((str(t["position"]), t["fruit"], t["status"], t["worker"] or "", str(t["attempts"]))
          for t in current["tasks"]))


@app.command()
def workers(master_url: MasterUrl = "http://127.0.0.1:8000", token: Token = None,
            as_json: JsonOutput = False) -> None:
    """List the workers Master knows, with their slots, prefetch and load."""
    with service_errors():
        rows = client.workers(master_url, token or default_token())
    show(rows, as_json, "workers", ("name", "slots", "prefetch", "busy", "live", "last seen"),
         ((w["name"], str(w["slots"]), str(w["prefetch"]), str(w["busy"]), "yes" if w["live"] else "no",
           w["last_seen"]) for w in rows))


app.command()(watch.watch)


@app.command()
def failed(
    order_id: Annotated[int | None, typer.Option("--order", help="Only this order's tasks.")] = None,
    master_url: MasterUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonOutput = False,
) -> None:
    """List failed tasks with their attempts, workers and errors."""
    with service_errors():
        rows = client.failed_tasks(master_url, token or default_token(), order_id)

    def workers_seen(task: dict) -> str:
        return ", ".join(dict.fromkeys(f["worker"] or "?" for f in task["failures"]))

    show(rows, as_json, "failed tasks", ("task", "order", "fruit", "attempts", "workers", "last error"),
         ((str(t["id"]), str(t["order_id"]), t["fruit"], str(t["attempts"]), workers_seen(t), t["error"] or "")
          for t in rows))


@app.command()
def requeue(
    task_id: Annotated[int | None, typer.Argument(help="The failed task to queue again.")] = None,
    order_id: Annotated[int | None, typer.Option("--order", help="Queue every failed task of this order.")] = None,
    master_url: MasterUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonOutput = False,
) -> None:
    """Queue failed tasks again with fresh attempts; their order resumes."""
    if (task_id is None) == (order_id is None):
        fail("give a TASK_ID or --order ORDER_ID (one of them)")
    with service_errors():
        result = client.requeue(master_url, token or default_token(), task_id, order_id)
    print(json.dumps(result)) if as_json else console.print(f"{result['requeued']} task(s) queued again")


# --- Local stack ---------------------------------------------------------------------------------
WorkersOption = Annotated[int, typer.Option(min=1, help="Worker processes.")]
SlotsOption = Annotated[int, typer.Option(min=1, help="Tasks each worker prepares at once.")]
ScaleOption = Annotated[float, typer.Option(min=0, help="A fruit takes execution_time x this many seconds.")]


def postgresql_url(url: str | None) -> str | None:
    if url:
        try:
            sqlalchemy_url(url)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return url


DatabaseOption = Annotated[str | None, typer.Option(
    envvar="SALAD_DATABASE_URL", callback=postgresql_url, show_default=False,
    help="PostgreSQL URL (default: an embedded PostgreSQL started here).")]


@contextmanager
def local_database(url: str | None, folder: Path | None) -> Iterator[str]:
    """`url` as given, or the URL of an embedded PostgreSQL running for the block: on its cluster in
    `folder` (kept), or in a temporary folder (removed) when `folder` is None."""
    if url:
        yield url
        return
    with ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="salad-postgres-")))
        console.print(f"starting PostgreSQL in {folder}/ ...")
        yield stack.enter_context(EmbeddedPostgres(folder)).url


@app.command()
def up(
    workers: WorkersOption = 3,
    slots: SlotsOption = 2,
    time_scale: ScaleOption = 1.0,
    database_url: DatabaseOption = None,
    shared_port: int = 8001,
    master_port: int = 8000,
    log_dir: Annotated[Path, typer.Option(help="Each process's JSON log goes here.")] = Path(".salad/logs"),
    with_prometheus: Annotated[bool, typer.Option("--prometheus", help="Also run a Prometheus scraping the stack.")] = False,
    prometheus_port: int = 9090,
) -> None:
    """Run Shared, Master and the workers on this machine until Ctrl-C (and their PostgreSQL: an embedded one
    in .salad/postgres unless --database-url is given)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the stack like Ctrl-C
    with (service_errors(), local_database(database_url, LOCAL_POSTGRES) as url,
          LocalStack(url, workers, slots, time_scale, log_dir=log_dir, shared_port=shared_port,
                     master_port=master_port) as stack):
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOKEN_FILE.touch(mode=0o600)
        TOKEN_FILE.chmod(0o600)  # touch keeps the mode of a file that exists: tighten it before writing
        TOKEN_FILE.write_text(stack.client_token)
        console.print(f"Web page {stack.shared_url}/#token={stack.client_token}")
        console.print(f"Shared  {stack.shared_url}   (API docs at {stack.shared_url}/docs)")
        console.print(f"Master  {stack.master_url}")
        console.print(f"{workers} workers x {slots} slots, logs in {log_dir}/, database {url}")
        console.print(f"client token in {TOKEN_FILE} (the salad commands here read it)")
        if with_prometheus:
            start_local_prometheus(stack, prometheus_port, log_dir)
        console.print("Order a salad with: salad order apple banana kiwi --wait    (Ctrl-C stops the stack)")
        try:
            while all(s.process.poll() is None for s in stack.services):
                time.sleep(0.5)
            fail("a service exited; see its log in " + str(log_dir))
        except KeyboardInterrupt:
            console.print("stopping: workers finish or hand back their tasks...")


def start_local_prometheus(stack: LocalStack, port: int, log_dir: Path) -> None:
    """Prometheus scraping every process of the stack, with salad's alert rules when they are at hand."""
    from salad.cli import prometheus

    def hosts(services) -> list[str]:
        return [s.url.removeprefix("http://") for s in services]

    targets = {"salad-shared": hosts([stack.find("shared")]),
               "salad-master": hosts([s for s in stack.services if s.name.startswith("master")]),
               "salad-worker": hosts(stack.worker_services)}
    rules = [p for p in [prometheus.REPO_RULES] if p.exists()]
    config = prometheus.render_config(targets, "5s", rules)
    try:
        process = prometheus.start(config, log_dir / "prometheus", port, (log_dir / "prometheus.log").open("ab"))
    except RuntimeError as exc:
        fail(str(exc))
    stack.extra_processes.append(process)
    console.print(f"Prometheus http://127.0.0.1:{port}   (try: salad_queue_depth, salad_order_completion_seconds)")


@app.command()
def demo(
    fruits: Annotated[int, typer.Option(min=1, help="Fruits in the salad.")] = 8,
    workers: WorkersOption = 3,
    slots: SlotsOption = 1,
    time_scale: ScaleOption = 0.25,
    database_url: DatabaseOption = None,
) -> None:
    """Bring a local stack up, order a salad, show its progress, print the completion time, stop (on an
    embedded PostgreSQL in a temporary folder unless --database-url is given)."""
    chosen = random.sample(FRUITS, k=min(fruits, len(FRUITS))) + random.choices(FRUITS, k=max(0, fruits - len(FRUITS)))
    with (tempfile.TemporaryDirectory(prefix="salad-demo-") as folder, service_errors(),
          local_database(database_url, None) as url):
        stack = LocalStack(url, workers, slots, time_scale, log_dir=Path(folder))
        console.print(f"starting Shared, Master and {workers} workers (fruit times 4-20 s x {time_scale})...")
        with stack:
            placed = client.order(stack.shared_url, stack.client_token, chosen)
            console.print(f"ordered salad {placed['id']}: {', '.join(chosen)}")
            final = client.follow(stack.shared_url, stack.client_token, placed["id"], console)
            by_worker = client.status(stack.shared_url, stack.client_token, placed["id"])["tasks"]
            table = Table(title="who prepared what")
            table.add_column("fruit")
            table.add_column("worker")
            for t in by_worker:
                table.add_row(t["fruit"], t["worker"] or "")
            console.print(table)
            report(final, as_json=False)
