"""`salad up`, `salad demo` and a `salad worker` joining the local stack: the whole system on one machine."""

import os
import random
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from salad.cli import client
from salad.cli.common import (
    DEFAULT_MASTER_URL,
    DEFAULT_SHARED_URL,
    console,
    err,
    fail,
    note,
    plural,
    service_errors,
)
from salad.cli.home import FOLDER, STACK_FILE, StackState, find_home, lock, searched_folders, shown
from salad.cli.ports import HOST, check_free
from salad.cli.salads import report
from salad.cli.stack import LocalStack, free_port
from salad.cli.supervisor import Supervisor
from salad.core.db import sqlalchemy_url
from salad.core.embedded import EmbeddedPostgres

FRUITS = ["apple", "banana", "kiwi", "mango", "orange", "pear", "pineapple", "grape", "cherry", "melon",
          "papaya", "peach", "plum", "strawberry", "lychee", "passion fruit"]

WorkersOption = Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes.")]
SlotsOption = Annotated[int, typer.Option(min=1, metavar="N", help="Tasks each worker prepares at once.")]
ScaleOption = Annotated[float, typer.Option(
    min=0, metavar="FACTOR", help="A fruit takes execution_time x this many seconds.")]


def postgresql_url(url: str | None) -> str | None:
    if url:
        try:
            sqlalchemy_url(url)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return url


DatabaseOption = Annotated[str | None, typer.Option(
    envvar="SALAD_DATABASE_URL", metavar="URL", callback=postgresql_url, show_default=False,
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
        note(f"starting PostgreSQL in {shown(folder)}/ ...")
        yield stack.enter_context(EmbeddedPostgres(folder)).url


def up_home() -> tuple[Path, StackState]:
    """The stack's folder (the nearest .salad/, or SALAD_HOME, or else a new .salad/ here) and its state: the
    last run's tokens and ports, or new tokens. Fails at once if another `salad up` runs that stack."""
    home = find_home() or searched_folders()[0]
    try:
        state = StackState.load(home)
    except ValueError as exc:
        note(f"{exc}: starting with new tokens")
        state = None
    if home.is_dir():
        hold(home, state)
    return home, state or StackState(home)


def hold(home: Path, state: StackState | None) -> None:
    """Take the stack's lock for as long as this process runs, or fail saying who holds it."""
    if lock(home) is None:
        where = f": its Shared is {state.shared_url}" if state and state.shared_url else ""
        pid = f" (pid {state.pid})" if state and state.pid else ""
        fail(f"a salad up{pid} is already running the stack in {home}{where}. Stop it first (Ctrl-C in its "
             f"terminal), or run this one with SALAD_HOME set to another folder")


def up(
    workers: WorkersOption = 3,
    slots: SlotsOption = 2,
    time_scale: ScaleOption = 1.0,
    database_url: DatabaseOption = None,
    shared_port: Annotated[int | None, typer.Option(
        metavar="PORT", show_default=False, help="Shared's port (default: the last run's, else 8001).")] = None,
    master_port: Annotated[int | None, typer.Option(
        metavar="PORT", show_default=False, help="Master's port (default: the last run's, else 8000).")] = None,
    log_dir: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False, help="Each process's JSON log goes here (default: .salad/logs).",
    )] = None,
    with_prometheus: Annotated[bool, typer.Option(
        "--prometheus", help="Also run a Prometheus scraping the stack.")] = False,
    prometheus_port: Annotated[int, typer.Option(metavar="PORT")] = 9090,
) -> None:
    """Run Shared, Master and the workers on this machine until Ctrl-C, restarting any that stops.

    Everything lives in .salad/ here (or the nearest .salad/ above, or SALAD_HOME): the embedded PostgreSQL
    (unless --database-url is given), the logs, and stack.json with the URLs and tokens, which the next
    salad up reuses so open pages and watchers keep working. The other commands find the stack from this
    folder and any folder below it. A service that exits is reported with its exit code or signal and
    started again, with the same name and port, after 1, 2, 4 ... up to 30 s.

    Examples:

        salad up
        salad up --workers 5 --time-scale 0.1
        salad up --shared-port 9001 --master-port 9000 --prometheus
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the stack like Ctrl-C
    home, state = up_home()
    shared_port = shared_port or state.port("shared") or int(DEFAULT_SHARED_URL.rsplit(":", 1)[1])
    master_port = master_port or state.port("master") or int(DEFAULT_MASTER_URL.rsplit(":", 1)[1])
    log_dir = log_dir or home / "logs"
    wanted = {"Shared": (shared_port, "--shared-port"), "Master": (master_port, "--master-port")}
    if with_prometheus:
        wanted["Prometheus"] = (prometheus_port, "--prometheus-port")
    with service_errors():
        check_free(wanted)
    if not home.is_dir():  # a first run here: the folder is made once the ports are known to be free
        home.mkdir(parents=True)
        hold(home, None)
    state.shared_url, state.master_url = f"http://{HOST}:{shared_port}", f"http://{HOST}:{master_port}"
    state.slots, state.time_scale, state.pid, state.services = slots, time_scale, os.getpid(), {}
    state.save()  # from now on the other commands find this stack, and a second `salad up` its pid
    with service_errors(), local_database(database_url, home / "postgres") as url:
        note(f"starting Shared on :{shared_port}, Master on :{master_port} and {plural(workers, 'worker')} "
             f"(logs in {shown(log_dir)}/) ...")
        with LocalStack(url, workers, slots, time_scale, log_dir=log_dir, shared_port=shared_port,
                        master_port=master_port, tokens=state.tokens) as stack:
            record(state, stack)
            if with_prometheus:
                start_local_prometheus(stack, prometheus_port, log_dir)
            banner(stack, home, url)
            try:
                Supervisor(stack, news, warn=lambda message: news(message, "yellow"),
                           on_restart=lambda: record(state, stack)).run()
            except KeyboardInterrupt:
                note("stopping: workers finish or hand back their tasks...")


def record(state: StackState, stack: LocalStack) -> None:
    """stack.json (0600, rewritten whole) with the processes as they are now."""
    state.services = {s.name: {"url": s.url, "pid": s.process.pid} for s in stack.services}
    state.save()


def news(message: str, style: str = "dim") -> None:
    """What the supervisor saw, timed: `salad up` runs for hours in its terminal."""
    err.print(f"{datetime.now():%H:%M:%S} {escape(message)}", style=style)


def banner(stack: LocalStack, home: Path, database_url: str) -> None:
    shared = stack.shared_url
    where = home.parent if home.name == FOLDER else home
    console.print(f"Web page {shared}/#token={stack.client_token}")
    console.print(f"Shared   {shared}   (API docs at {shared}/docs)")
    console.print(f"Master   {stack.master_url}")
    workers = plural(len(stack.worker_services), "worker")
    console.print(f"{workers} x {plural(stack.slots, 'slot')}, logs in {shown(stack.log_dir)}/, "
                  f"database {database_url.split('@')[-1]}")
    console.print(f"URLs and tokens in {shown(home / STACK_FILE)}: the salad commands find them from {where} "
                  f"and any folder below it (elsewhere: SALAD_HOME={home})")
    console.print("Order a salad:  salad order apple banana kiwi --wait")
    console.print("Watch it:       salad watch      (or open the web page)")
    console.print("Add a worker:   salad worker     (in another terminal; Ctrl-C here stops the stack)")


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
    console.print(f"Prometheus http://127.0.0.1:{port}   try:", *prometheus.TRY_QUERIES, sep="\n    ",
                  markup=False, highlight=False)


def join_local_stack() -> None:
    """Let `salad worker` with no settings join the local stack: its Master URL, worker token, pace and a
    free port come from stack.json. Settings given as SALAD_* variables win; without a local stack,
    nothing changes (a container)."""
    if "SALAD_MASTER_URL" in os.environ or "SALAD_WORKER_TOKEN" in os.environ:
        return
    home = find_home()
    try:
        state = StackState.load(home) if home else None
    except ValueError as exc:
        fail(str(exc))
    if state is None or not state.master_url:
        return
    name = os.environ.setdefault("SALAD_WORKER_NAME", f"{socket.gethostname()}-{os.getpid()}")
    defaults = {"SALAD_MASTER_URL": state.master_url, "SALAD_WORKER_TOKEN": state.tokens["worker"],
                "SALAD_HOST": "127.0.0.1", "SALAD_PORT": str(free_port()),
                "SALAD_SLOTS": state.slots, "SALAD_TIME_SCALE": state.time_scale}
    for variable, value in defaults.items():
        if value is not None:
            os.environ.setdefault(variable, str(value))
    running = "" if state.running() else " (salad up is not running there now: the worker waits for Master)"
    note(f"joining the local stack of {home} as {name}: Master {state.master_url}{running}")


def demo(
    fruits: Annotated[int, typer.Option(min=1, metavar="N", help="Fruits in the salad.")] = 8,
    workers: WorkersOption = 3,
    slots: SlotsOption = 1,
    time_scale: ScaleOption = 0.25,
    database_url: DatabaseOption = None,
) -> None:
    """Bring a local stack up, order a salad, show its progress and completion time, and stop.

    Runs on an embedded PostgreSQL in a temporary folder unless --database-url is given; leaves nothing
    behind.

    Examples:

        salad demo
        salad demo --fruits 12 --workers 4 --time-scale 0.1
    """
    chosen = random.sample(FRUITS, k=min(fruits, len(FRUITS))) + random.choices(FRUITS, k=max(0, fruits - len(FRUITS)))
    with (tempfile.TemporaryDirectory(prefix="salad-demo-") as folder, service_errors(),
          local_database(database_url, None) as url):
        stack = LocalStack(url, workers, slots, time_scale, log_dir=Path(folder))
        note(f"starting Shared, Master and {workers} workers (fruit times 4-20 s x {time_scale:g})...")
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
