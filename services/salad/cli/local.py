"""`salad up` and `salad demo`: the whole system on one machine."""

import random
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from salad.cli import client
from salad.cli.common import TOKEN_FILE, console, fail, note, plural, service_errors
from salad.cli.salads import report
from salad.cli.stack import LocalStack
from salad.core.db import sqlalchemy_url
from salad.core.embedded import EmbeddedPostgres

FRUITS = ["apple", "banana", "kiwi", "mango", "orange", "pear", "pineapple", "grape", "cherry", "melon",
          "papaya", "peach", "plum", "strawberry", "lychee", "passion fruit"]
LOCAL_POSTGRES = Path(".salad/postgres")  # `salad up`'s embedded PostgreSQL cluster, kept between runs

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
        note(f"starting PostgreSQL in {folder}/ ...")
        yield stack.enter_context(EmbeddedPostgres(folder)).url


def up(
    workers: WorkersOption = 3,
    slots: SlotsOption = 2,
    time_scale: ScaleOption = 1.0,
    database_url: DatabaseOption = None,
    shared_port: Annotated[int, typer.Option(metavar="PORT")] = 8001,
    master_port: Annotated[int, typer.Option(metavar="PORT")] = 8000,
    log_dir: Annotated[Path, typer.Option(
        metavar="DIR", help="Each process's JSON log goes here.")] = Path(".salad/logs"),
    with_prometheus: Annotated[bool, typer.Option(
        "--prometheus", help="Also run a Prometheus scraping the stack.")] = False,
    prometheus_port: Annotated[int, typer.Option(metavar="PORT")] = 9090,
) -> None:
    """Run Shared, Master and the workers on this machine until Ctrl-C.

    Their PostgreSQL is an embedded one in .salad/postgres unless --database-url is given; the client token
    goes to .salad/client.token, which the other commands read.

    Examples:

        salad up
        salad up --workers 5 --time-scale 0.1
        salad up --shared-port 9001 --master-port 9000 --prometheus
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the stack like Ctrl-C
    with (service_errors(), local_database(database_url, LOCAL_POSTGRES) as url,
          LocalStack(url, workers, slots, time_scale, log_dir=log_dir, shared_port=shared_port,
                     master_port=master_port) as stack):
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOKEN_FILE.touch(mode=0o600)
        TOKEN_FILE.chmod(0o600)  # touch keeps the mode of a file that exists: tighten it before writing
        TOKEN_FILE.write_text(stack.client_token)
        console.print(f"Web page {stack.shared_url}/#token={stack.client_token}")
        console.print(f"Shared   {stack.shared_url}   (API docs at {stack.shared_url}/docs)")
        console.print(f"Master   {stack.master_url}")
        console.print(f"{plural(workers, 'worker')} x {plural(slots, 'slot')}, logs in {log_dir}/, "
                      f"database {url.split('@')[-1]}")
        console.print(f"client token in {TOKEN_FILE} (the salad commands here read it)")
        if with_prometheus:
            start_local_prometheus(stack, prometheus_port, log_dir)
        console.print("Order a salad with: salad order apple banana kiwi --wait    (Ctrl-C stops the stack)")
        try:
            while all(s.process.poll() is None for s in stack.services):
                time.sleep(0.5)
            fail("a service exited; see its log in " + str(log_dir))
        except KeyboardInterrupt:
            note("stopping: workers finish or hand back their tasks...")


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
