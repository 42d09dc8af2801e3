"""Retention: finished orders and their rows are deleted in batches once old enough; open work is kept."""

import httpx
import psycopg

from tests.helpers import get_order, order, wait_final, wait_until

TABLES = ("orders", "salads", "tasks", "task_failures", "outbox")
RETAIN = {"SALAD_RETENTION_SECONDS": "4", "SALAD_PRUNE_INTERVAL": "0.2", "SALAD_PRUNE_BATCH": "2",
          "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}


def rows_per_order(database_url: str, order_id: int) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table} WHERE "
                                    f"{'id' if table == 'orders' else 'order_id'} = %s", (order_id,)).fetchone()[0]
                for table in TABLES}


def test_finished_orders_are_deleted_after_the_retention_period_and_open_ones_kept(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=2, slots=4, time_scale=0.01, env=RETAIN)
    finished = [order(stack, ["apple", "kiwi", "mango"])["id"] for _ in range(5)]  # 5 orders: 3 batches of 2
    last = finished[-1]
    assert wait_final(stack, last, timeout=60)["status"] == "completed"
    stored = rows_per_order(postgres_url, last)
    assert stored["orders"] == stored["salads"] == stored["outbox"] == 1 and stored["tasks"] == 3, \
        "kept while younger than the retention period"
    assert all(wait_final(stack, order_id)["status"] == "completed" for order_id in finished)

    for worker in stack.worker_services:
        stack.stop_service(worker)
    waiting = order(stack, ["pear"])["id"]  # no worker left: it stays open past the retention period

    for order_id in finished:
        wait_until(lambda o=order_id: not any(rows_per_order(postgres_url, o).values()), timeout=30,
                   message=f"order {order_id} and its rows deleted")
    gone = httpx.get(f"{stack.shared_url}/v1/orders/{finished[0]}", headers=stack.client_headers, timeout=10)
    assert gone.status_code == 404
    kept = rows_per_order(postgres_url, waiting)
    assert kept["orders"] == kept["salads"] == kept["tasks"] == 1
    assert get_order(stack, waiting)["status"] == "in_progress"
