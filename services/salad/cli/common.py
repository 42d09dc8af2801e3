"""What the `salad` commands share: output, exit codes and errors, the options that find the local stack,
and the words and times people read."""

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from salad.cli import client
from salad.cli.client import ExitCode, word  # noqa: F401 (the commands' word for a status)
from salad.cli.home import HOME_ENV, STACK_FILE, StackState, find_home, where_looked
from salad.cli.ports import PortInUse
from salad.cli.stack import StartFailed
from salad.core.embedded import EmbeddedPostgresError

# Never wrapped: a line too long for a terminal is the terminal's to fold, and a pipe gets it whole.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_SHARED_URL = "http://127.0.0.1:8001"
DEFAULT_MASTER_URL = "http://127.0.0.1:8000"
EXIT_CODES = ("Exit codes: 0 done; 1 error (a refused request, a failed salad, a stack that cannot start); "
              "2 wrong usage; 3 not found; 4 a service out of reach or unavailable, or --timeout ran out.")


# --- Errors --------------------------------------------------------------------------------------
def fail(message: str, code: int = ExitCode.ERROR) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")  # a log line's [brackets] are not markup
    raise typer.Exit(code)


def note(message: str) -> None:
    """Progress and news, on stderr: stdout is for what a script reads."""
    err.print(escape(message), style="dim")


@contextmanager
def service_errors():
    """An unreachable service, a refused request, or a local stack that cannot start ends the command with
    its message and exit code."""
    try:
        yield
    except client.ServiceError as exc:
        hint = origins.hint(exc)
        fail(f"{exc}\n{hint}" if hint else str(exc), exc.exit_code)
    except (StartFailed, EmbeddedPostgresError, PortInUse) as exc:
        fail(str(exc))


# --- Finding the stack ---------------------------------------------------------------------------
@lru_cache
def local_stack() -> StackState | None:
    """The stack of the nearest `.salad/` (or SALAD_HOME), if `salad up` ever ran there."""
    home = find_home()
    try:
        return StackState.load(home) if home else None
    except ValueError as exc:
        fail(str(exc))


@dataclass
class Origins:
    """Where this command's URL and token came from: "given" (an option or its variable), "stack" (the
    local stack's), "default" (a URL) or "none" (no token). The hint under an error says what to check."""

    url: str = ""
    url_option: str = ""
    token: str = ""

    def hint(self, exc: client.ServiceError) -> str:
        stack = local_stack()
        if exc.status in (401, 403):
            if self.token == "given":
                return "check --token or SALAD_CLIENT_TOKEN"
            if self.token == "stack":
                return (f"the token is the local stack's ({stack.home / STACK_FILE}); for another stack "
                        "give --token or SALAD_CLIENT_TOKEN")
            return f"no client token found: {where_looked()}. Give --token or SALAD_CLIENT_TOKEN"
        if exc.exit_code != ExitCode.UNAVAILABLE or exc.status:
            return ""
        if self.url == "stack":
            if stack.running():
                return f"salad up is running in {stack.home}: the service may be restarting (see its logs)"
            return f"the URL is from {stack.home / STACK_FILE}, but salad up is not running there: start it"
        if self.url == "default":
            return (f"no local stack found: {where_looked()}. Start one with salad up, "
                    f"or give {self.url_option}")
        return ""


origins = Origins()  # one command per process


def normalise_url(value: str) -> str:
    """A base URL as given, less trailing slashes (`http://host:8001/` would give `//v1/...`)."""
    url = value.strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return url


def url_option(kind: str, default: str):
    """A callback giving the URL given, else the local stack's, else `default`."""
    option = f"--{kind}-url"

    def resolve(value: str | None) -> str:
        origins.url_option = option
        if value:
            origins.url = "given"
            return normalise_url(value)
        stack = local_stack()
        url = getattr(stack, f"{kind}_url") if stack else None
        origins.url = "stack" if url else "default"
        return url or default

    return resolve


def token_option(value: str | None) -> str | None:
    if value:
        origins.token = "given"
        return value
    stack = local_stack()
    origins.token = "stack" if stack else "none"
    return stack.tokens["client"] if stack else None


SharedUrl = Annotated[str, typer.Option(
    envvar="SALAD_SHARED_URL", metavar="URL", callback=url_option("shared", DEFAULT_SHARED_URL),
    show_default=False, help=f"Shared's base URL (default: the local stack's, else {DEFAULT_SHARED_URL}).")]
MasterUrl = Annotated[str, typer.Option(
    envvar="SALAD_MASTER_URL", metavar="URL", callback=url_option("master", DEFAULT_MASTER_URL),
    show_default=False, help=f"Master's base URL (default: the local stack's, else {DEFAULT_MASTER_URL}).")]
Token = Annotated[str | None, typer.Option(
    envvar="SALAD_CLIENT_TOKEN", metavar="TOKEN", callback=token_option, show_default=False,
    help=f"Client bearer token (default: the local stack's, from .salad/ here or above, or {HOME_ENV}).")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]


# --- Words and times -----------------------------------------------------------------------------
def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 2 h 07 min: for how long something ran."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def ago(timestamp: str | None, now: datetime | None = None) -> str:
    """An ISO timestamp as "12 s ago", "3 min ago", "2 h ago", "4 days ago"."""
    if not timestamp:
        return "never"
    then = datetime.fromisoformat(timestamp)
    then = then if then.tzinfo else then.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - then).total_seconds()
    if seconds < 1:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{plural(count, unit) if unit == 'day' else f'{count} {unit}'} ago"
    return f"{int(seconds)} s ago"


# --- Output --------------------------------------------------------------------------------------
def show(data, as_json: bool, title: str, columns: tuple[str, ...], rows) -> None:
    """JSON for scripts (`--json`), a table for people."""
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
