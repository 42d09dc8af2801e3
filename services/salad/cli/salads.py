"""`salad order`, `status`, `workers`, `failed` and `requeue`: salads and workers through the services' APIs.

Tables use the web page's words (waiting, in progress, done); `--json` prints the API's answer as it is.
"""

import json
from typing import Annotated

import typer
from rich.console import Console

from salad.cli import client
from salad.cli.common import (
    JsonOutput,
    MasterUrl,
    SharedUrl,
    Token,
    ago,
    console,
    fail,
    plural,
    service_errors,
    show,
    word,
)

OrderId = Annotated[int, typer.Argument(metavar="ORDER_ID", show_default=False, help="The order's number.")]


def order(
    fruits: Annotated[list[str], typer.Argument(
        metavar="FRUIT", show_default=False, help="The fruits of the salad.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the order until it is ready.")] = False,
    priority: Annotated[int, typer.Option(metavar="N", help="Higher goes first among waiting orders.")] = 0,
    timeout: Annotated[float | None, typer.Option(
        metavar="SECONDS", show_default=False, help="With --wait: give up after this many seconds (exit code 4).",
    )] = None,
    shared_url: SharedUrl = None,
    token: Token = None,
    as_json: JsonOutput = False,
) -> None:
    """Order a salad.

    Without --wait, prints the order's number and returns; with it, shows each fruit's progress and the
    completion time, and exits with 1 if the salad failed.

    Examples:

        salad order apple banana kiwi
        salad order apple banana kiwi --wait
        salad order mango --wait --timeout 60 --json
    """
    with service_errors():
        placed = client.order(shared_url, token, fruits, priority)
        if not wait:
            if as_json:
                print(json.dumps(placed))
            else:
                console.print(f"order [bold]{placed['id']}[/bold] placed")
            return
        final = client.follow(shared_url, token, placed["id"], Console(quiet=as_json), timeout)
    report(final, as_json)


def report(final: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(final))
    elif final["status"] == "completed":
        fruits = plural(len(final["fruits"]), "fruit")
        console.print(f"The salad is ready! Enjoy! order {final['id']}: {fruits} "
                      f"in [bold]{final['preparation_time']:.2f} s[/bold]")
    if final["status"] != "completed":
        fail(f"order {final['id']} failed: {final['failure_reason']}")


def status(order_id: OrderId, shared_url: SharedUrl = None, token: Token = None,
           as_json: JsonOutput = False) -> None:
    """Show an order: its status, each fruit's state and the completion time.

    Examples:

        salad status 12
        salad status 12 --json
    """
    with service_errors():
        current = client.status(shared_url, token, order_id)
    title = f"order {order_id}: {word(current['status'])}" + (
        f" in {current['preparation_time']:.2f} s" if current["preparation_time"] else "")
    title += f", ordered {ago(current['created_at'])}"
    show(current, as_json, title, ("#", "fruit", "status", "worker", "attempts"),
         ((str(t["position"]), t["fruit"], word(t["status"]), t["worker"] or "", str(t["attempts"]))
          for t in current["tasks"]))


def workers(master_url: MasterUrl = None, token: Token = None, as_json: JsonOutput = False) -> None:
    """List the workers Master knows, with their slots, prefetch and load.

    Examples:

        salad workers
        salad workers --json
    """
    with service_errors():
        rows = client.workers(master_url, token)
    show(rows, as_json, "workers", ("name", "slots", "prefetch", "busy", "live", "last seen"),
         ((w["name"], str(w["slots"]), str(w["prefetch"]), str(w["busy"]), "yes" if w["live"] else "no",
           ago(w["last_seen"])) for w in rows))


def failed(
    order_id: Annotated[int | None, typer.Option(
        "--order", metavar="ORDER_ID", show_default=False, help="Only this order's tasks.")] = None,
    master_url: MasterUrl = None,
    token: Token = None,
    as_json: JsonOutput = False,
) -> None:
    """List failed tasks with their attempts, workers and errors.

    Examples:

        salad failed
        salad failed --order 12
    """
    with service_errors():
        rows = client.failed_tasks(master_url, token, order_id)

    def workers_seen(task: dict) -> str:
        return ", ".join(dict.fromkeys(f["worker"] or "?" for f in task["failures"]))

    show(rows, as_json, "failed tasks", ("task", "order", "fruit", "attempts", "workers", "last error"),
         ((str(t["id"]), str(t["order_id"]), t["fruit"], str(t["attempts"]), workers_seen(t), t["error"] or "")
          for t in rows))


def requeue(
    task_id: Annotated[int | None, typer.Argument(
        metavar="TASK_ID", show_default=False, help="The failed task to queue again.")] = None,
    order_id: Annotated[int | None, typer.Option(
        "--order", metavar="ORDER_ID", show_default=False, help="Queue every failed task of this order.",
    )] = None,
    master_url: MasterUrl = None,
    token: Token = None,
    as_json: JsonOutput = False,
) -> None:
    """Queue failed tasks again with fresh attempts; their order resumes.

    Examples:

        salad requeue 57
        salad requeue --order 12
    """
    if (task_id is None) == (order_id is None):
        raise typer.BadParameter("give a TASK_ID or --order ORDER_ID (one of them)")
    with service_errors():
        result = client.requeue(master_url, token, task_id, order_id)
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"{plural(result['requeued'], 'task')} queued again")
