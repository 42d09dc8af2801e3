"""`salad order`, `status`, `workers`, `failed` and `requeue`: salads and workers through the services' APIs."""

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
    console,
    default_token,
    fail,
    service_errors,
    show,
)


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


def workers(master_url: MasterUrl = "http://127.0.0.1:8000", token: Token = None,
            as_json: JsonOutput = False) -> None:
    """List the workers Master knows, with their slots, prefetch and load."""
    with service_errors():
        rows = client.workers(master_url, token or default_token())
    show(rows, as_json, "workers", ("name", "slots", "prefetch", "busy", "live", "last seen"),
         ((w["name"], str(w["slots"]), str(w["prefetch"]), str(w["busy"]), "yes" if w["live"] else "no",
           w["last_seen"]) for w in rows))



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
