"""Small helpers the end-to-end tests share: ordering over HTTP, waiting, reading worker logs."""

import json
import time
from collections import Counter

import httpx
from salad.cli.stack import LocalStack


def order(stack: LocalStack, fruits: list[str], **headers: str) -> dict:
    response = httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": fruits},
                          headers={**stack.client_headers, **headers}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def get_order(stack: LocalStack, order_id: int) -> dict:
    response = httpx.get(f"{stack.shared_url}/v1/orders/{order_id}", headers=stack.client_headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def wait_final(stack: LocalStack, order_id: int, timeout: float = 60) -> dict:
    """Wait until the order is completed or failed; return it."""
    return wait_until(
        lambda: (o := get_order(stack, order_id))["status"] in ("completed", "failed") and o,
        timeout, message=f"order {order_id} final",
    )


def prepared_tasks(stack: LocalStack) -> Counter:
    """How many times each task id was prepared, from every worker's JSON log."""
    seen: Counter = Counter()
    for service in stack.worker_services:
        for line in service.log_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message", "").startswith("prepared"):
                seen.update(task["task_id"] for task in record.get("tasks", []))
    return seen
