"""The CLI's view of Shared and Master: order, follow and list salads over the public API."""

import sys
import time
import uuid
from enum import IntEnum

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from salad.core.auth import bearer_header

POLL_INTERVAL = 0.25  # seconds between status reads while following an order
FINAL = ("completed", "failed")
RETRY_FOR = 30.0  # seconds a request is tried again while the service answers "unavailable for now"
UNAVAILABLE = (502, 503, 504)  # the services say 503 (with Retry-After) while their database is away
# The web page's words for the API's statuses (shared/web/app.js), in every table and message; --json keeps
# the API's own.
WORDS = {"pending": "waiting", "in_progress": "in progress", "succeeded": "done"}


def word(status: str) -> str:
    return WORDS.get(status, status)


class ExitCode(IntEnum):
    """What `salad` exits with (its --help and the README list them)."""

    OK = 0
    ERROR = 1  # a refused request, a failed salad, a stack that cannot start
    USAGE = 2  # wrong options or arguments (click's own code)
    NOT_FOUND = 3  # the order, task or worker does not exist (404)
    UNAVAILABLE = 4  # a service out of reach or unavailable (502, 503, 504), or --timeout ran out


class ServiceError(Exception):
    """A service could not be reached or refused the request: the message says which and why."""

    def __init__(self, message: str, exit_code: int = ExitCode.ERROR, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code, self.status = exit_code, status


def exit_code_of(status: int) -> ExitCode:
    if status == 404:
        return ExitCode.NOT_FOUND
    return ExitCode.UNAVAILABLE if status in UNAVAILABLE else ExitCode.ERROR


def call(method: str, url: str, token: str | None, headers: dict | None = None, retry: bool = False,
         **kwargs) -> httpx.Response:
    """Send a request; a 4xx or 5xx, or a service out of reach, raises ServiceError saying why.

    With `retry` (for requests safe to repeat), a 502, 503 or 504 is tried again after its Retry-After for up
    to RETRY_FOR seconds, so an order or a follow outlives a database restart. A service out of reach is
    reported at once: most often the URL is wrong.
    """
    headers = {**(headers or {}), **bearer_header(token)}
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            response = httpx.request(method, url, timeout=15, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach {url}: {exc}", ExitCode.UNAVAILABLE) from exc
        pause = retry_after(response)
        if not retry or response.status_code not in UNAVAILABLE or time.monotonic() + pause > deadline:
            break
        print(f"{method} {url} answered {response.status_code}: trying again in {pause:g} s", file=sys.stderr,
              flush=True)
        time.sleep(pause)
    if response.status_code >= 400:
        try:
            detail = response.json().get("message") or response.json().get("detail")
        except ValueError:
            detail = response.text
        raise ServiceError(f"{method} {url} answered {response.status_code}: {detail}",
                           exit_code_of(response.status_code), response.status_code)
    return response


def retry_after(response: httpx.Response) -> float:
    """Seconds the service asks to wait before trying again (Retry-After in seconds), else one."""
    value = response.headers.get("retry-after", "")
    return min(float(value), RETRY_FOR) if value.isdigit() else 1.0


def order(shared_url: str, token: str | None, fruits: list[str], priority: int = 0) -> dict:
    """Create an order; the idempotency key makes a retried request create one order."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"fruits": fruits, "priority": priority}
    return call("POST", f"{shared_url}/v1/orders", token, json=body, headers=headers, retry=True).json()


def status(shared_url: str, token: str | None, order_id: int) -> dict:
    return call("GET", f"{shared_url}/v1/orders/{order_id}", token, retry=True).json()


def workers(master_url: str, token: str | None) -> list[dict]:
    return call("GET", f"{master_url}/v1/workers", token, retry=True).json()


def failed_tasks(master_url: str, token: str | None, order_id: int | None) -> list[dict]:
    params = {"status": "failed", **({"order_id": order_id} if order_id else {})}
    return call("GET", f"{master_url}/v1/tasks", token, params=params, retry=True).json()


def requeue(master_url: str, token: str | None, task_id: int | None, order_id: int | None) -> dict:
    """Queue one failed task, or every failed task of an order, again."""
    path = f"/v1/tasks/{task_id}/requeue" if task_id else f"/v1/orders/{order_id}/requeue"
    return call("POST", master_url + path, token).json()


def follow(shared_url: str, token: str | None, order_id: int, console: Console, timeout: float | None = None) -> dict:
    """Show a live progress bar until the order completes or fails; return its final state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (TextColumn("[bold]salad {task.fields[order]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        current = status(shared_url, token, order_id)
        bar = progress.add_task("", total=len(current["fruits"]), order=order_id, detail="")
        while True:
            counts = current["counts"]
            detail = f"running {counts['running']}, queued {counts['queued']}" + (
                f", failed {counts['failed']}" if counts["failed"] else "")
            progress.update(bar, completed=counts["done"], detail=detail)
            if current["status"] in FINAL:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise ServiceError(f"order {order_id} still {word(current['status'])} after "
                                   f"{timeout:g} s (--timeout)", ExitCode.UNAVAILABLE)
            time.sleep(POLL_INTERVAL)
            current = status(shared_url, token, order_id)
