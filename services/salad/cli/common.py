"""What the `salad` commands share: options, the client token, errors and output."""

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from salad.cli import client
from salad.cli.stack import StartFailed
from salad.core.embedded import EmbeddedPostgresError

console = Console()

SharedUrl = Annotated[str, typer.Option(envvar="SALAD_SHARED_URL", help="Shared's base URL.")]
MasterUrl = Annotated[str, typer.Option(envvar="SALAD_MASTER_URL", help="Master's base URL.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TOKEN_FILE = Path(".salad/client.token")  # written by `salad up`, read by the other commands


def default_token() -> str | None:
    return TOKEN_FILE.read_text().strip() if TOKEN_FILE.exists() else None


Token = Annotated[str | None, typer.Option(envvar="SALAD_CLIENT_TOKEN", show_default=False,
                                           help="Client bearer token (default: .salad/client.token if present).")]


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}")  # a log line's [brackets] are not markup
    raise typer.Exit(1)


@contextmanager
def service_errors():
    """An unreachable service, a refused request or a local service or PostgreSQL that cannot start ends the
    command with its message, exit code 1."""
    try:
        yield
    except (client.ServiceError, StartFailed, EmbeddedPostgresError) as exc:
        fail(str(exc))


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
