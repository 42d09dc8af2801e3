"""`salad watch`: the web page's live view in a terminal, from Shared's /v1/events stream."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import httpx
import typer
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from salad.cli import client
from salad.cli.common import SharedUrl, Token, service_errors, word
from salad.core.auth import bearer_header

READ_TIMEOUT = 35.0  # seconds without a byte (Shared sends a heartbeat every 15 s) before reconnecting
RETRY_SECONDS = 1.0  # before reconnecting, unless the stream says otherwise (`retry:`)
FRUIT_STYLE = {"queued": ("·", "dim"), "running": ("▶", "yellow"), "done": ("✓", "green"),
               "failed": ("✗", "red")}


@dataclass
class Event:
    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None
    retry: int | None = None


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-sent events from a stream's lines (the format EventSource reads; comments are skipped)."""
    current = Event()
    for line in lines:
        if not line:
            if current.data:
                yield current
            current = Event()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            current.data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry" and value.isdigit():
            current.retry = int(value)


def snapshots(shared_url: str, token: str | None) -> Iterator[dict | str]:
    """Dashboards as they change, forever; a reason when the stream breaks (then it reconnects, as EventSource
    does)."""
    headers = {"Accept": "text/event-stream", **bearer_header(token)}
    retry = RETRY_SECONDS
    while True:
        try:
            timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
            with httpx.stream("GET", f"{shared_url}/v1/events", headers=headers, timeout=timeout) as response:
                if response.status_code in (401, 403, 404):  # retrying will not help: say so
                    client.call("GET", f"{shared_url}/v1/dashboard", token)  # raises with Shared's reason
                if response.status_code == 503:  # as many streams open as it serves, or its database away
                    response.read()
                    yield f"{refusal(response)}; reconnecting in {client.retry_after(response):g} s"
                    time.sleep(client.retry_after(response))
                    continue
                response.raise_for_status()
                for event in parse_events(response.iter_lines()):
                    retry = event.retry / 1000 if event.retry is not None else retry
                    if event.id:
                        headers["Last-Event-ID"] = event.id
                    if event.event == "snapshot":
                        yield json.loads("\n".join(event.data))
            reason = "the stream ended"
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        yield f"{reason}; reconnecting"
        time.sleep(retry)


def refusal(response: httpx.Response) -> str:
    """Shared's reason for a 503 (why it will not serve a stream now)."""
    try:
        message = response.json().get("message")
    except ValueError:
        message = None
    return f"Shared answered 503: {message or response.text}"


# --- Rendering -----------------------------------------------------------------------------------
def clock(value: str | None) -> str:
    return datetime.fromisoformat(value).astimezone().strftime("%H:%M:%S") if value else "-"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 60 else f"{int(value // 60)} min {round(value % 60):02d} s"


def fruit_text(fruit: dict) -> Text:
    mark, style = FRUIT_STYLE.get(fruit["state"], ("?", ""))
    where = f" ({fruit['worker']})" if fruit["state"] == "running" and fruit["worker"] else ""
    return Text(f"{mark} {fruit['fruit']}{where}", style=style, no_wrap=True)


def orders_table(snapshot: dict) -> Table:
    table = Table(title=f"open orders ({snapshot['open_total']})", title_justify="left", expand=True)
    for name, options in (("salad", {"justify": "right"}), ("status", {}), ("progress", {"width": 26}),
                          ("fruits", {"ratio": 1})):
        table.add_column(name, **options)
    for order in snapshot["open_orders"]:
        total, done = len(order["fruits"]), order["counts"]["done"]
        progress = Table.grid(padding=(0, 1))
        progress.add_row(ProgressBar(total=total, completed=done, width=18), f"{done}/{total}")
        fruits = Columns([fruit_text(f) for f in order["fruits"]], padding=(0, 2))
        table.add_row(f"#{order['id']}", word(order["status"]), progress, fruits)
    if not snapshot["open_orders"]:
        table.add_row("", Text("no salad in preparation", style="dim"), "", "")
    return table


def workers_table(snapshot: dict) -> Table:
    table = Table(title=f"live workers ({len(snapshot['workers'])})", title_justify="left")
    for name in ("worker", "busy slots", ""):
        table.add_column(name)
    for worker in snapshot["workers"]:
        bar = ProgressBar(total=worker["slots"], completed=worker["busy"], width=12, complete_style="yellow")
        table.add_row(worker["name"], bar, f"{worker['busy']}/{worker['slots']}")
    return table


def recent_table(snapshot: dict) -> Table:
    completed = snapshot["completed"]
    failed = f", {snapshot['failed']} failed" if snapshot["failed"] else ""
    title = f"{completed} salad{'' if completed == 1 else 's'} completed{failed}"
    table = Table(title=title, title_justify="left")
    for name, justify in (("salad", "right"), ("fruits", "right"), ("time", "right"), ("finished", "left")):
        table.add_column(name, justify=justify)
    for order in snapshot["recent"]:
        time_cell = (seconds(order["preparation_time"]) if order["status"] == "completed"
                     else Text("failed", style="red"))
        table.add_row(f"#{order['id']}", str(order["fruits"]), time_cell, clock(order["completed_at"]))
    return table


def render(snapshot: dict | None, trouble: str | None = None, live: bool = True) -> Group:
    """The whole view; `trouble` says why it is not live right now."""
    if trouble:
        state = Text(trouble, style="yellow")
    else:
        state = Text("live", style="green") if live else Text(f"at {datetime.now():%H:%M:%S}", style="dim")
    header = Text.assemble(("salad watch", "bold"), "  ", state)
    if snapshot is None:
        return Group(header, Text("waiting for Shared…", style="dim"))
    lower = Table.grid(padding=(0, 4))
    lower.add_row(workers_table(snapshot), recent_table(snapshot))
    return Group(header, orders_table(snapshot), lower)


# --- Command -------------------------------------------------------------------------------------
def watch(
    shared_url: SharedUrl = None,
    token: Token = None,
    once: Annotated[bool, typer.Option("--once", help="Print the current view once and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print snapshots as JSON, one per line.")] = False,
) -> None:
    """Watch salads being prepared: open orders fruit by fruit, workers, completed salads (Ctrl-C stops).

    The web page's view in a terminal, live from Shared's event stream; it reconnects by itself when Shared
    restarts.

    Examples:

        salad watch
        salad watch --once
        salad watch --json | jq .open_total
    """
    console = Console()
    with service_errors():
        try:
            if once:
                snapshot = client.call("GET", f"{shared_url}/v1/dashboard", token).json()
                print(json.dumps(snapshot)) if as_json else console.print(render(snapshot, live=False))
                return
            if as_json:
                for snapshot in snapshots(shared_url, token):
                    if isinstance(snapshot, dict):
                        print(json.dumps(snapshot), flush=True)
                return
            last = None
            with Live(render(None, "connecting"), console=console, auto_refresh=False) as live:
                for snapshot in snapshots(shared_url, token):
                    if isinstance(snapshot, dict):
                        last, trouble = snapshot, None
                    else:
                        trouble = snapshot
                    live.update(render(last, trouble), refresh=True)
        except KeyboardInterrupt:
            pass
