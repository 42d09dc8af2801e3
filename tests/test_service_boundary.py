"""Shared reads no table of Master's: an order's fruits and the live workers come from Master's API, fruit counts
in Master's reports; with Master away, Shared still answers with what it owns (docs/architecture.md)."""

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from salad.contracts.internal import OrderProgress
from salad.contracts.orders import FruitCounts
from salad.core.db import make_engine, sqlalchemy_url
from salad.shared import orders

from tests.helpers import get_order, order, wait_final, wait_until

FAST = {"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}


def listed(stack, order_id: int) -> dict:
    """The order as the list shows it: counts from Master's reports, no call to Master."""
    page = httpx.get(f"{stack.shared_url}/v1/orders", headers=stack.client_headers, timeout=10).json()
    return next(o for o in page["items"] if o["id"] == order_id)


def test_counts_travel_in_reports_and_shared_answers_without_master(make_stack, postgres_url):
    # One worker, one slot, fruits of 0.4-0.6 s: the order is in progress for about 2 s.
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=0.1,
                       env={**FAST, "SALAD_EXECUTION_TIME_MIN": "4", "SALAD_EXECUTION_TIME_MAX": "6"})
    placed = order(stack, ["apple", "kiwi", "mango", "pear"])
    assert placed["tasks"] and not placed["tasks_unavailable"]

    # Master's read API: the fruits and the live workers in one snapshot, with the client or master token.
    running = wait_until(lambda: any(t["status"] == "running" for t in get_order(stack, placed["id"])["tasks"]),
                         20, message="a fruit running")
    assert running
    for token in (stack.tokens["client"], stack.tokens["master"]):
        read = httpx.get(f"{stack.master_url}/v1/progress", params={"order_id": placed["id"], "workers": "true"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert read.status_code == 200, read.text
    progress = read.json()
    assert [f["fruit"] for f in progress["orders"][0]["fruits"]] == placed["fruits"]
    assert [w["name"] for w in progress["workers"]] == ["worker-1"]

    # The list's counts come from Master's progress reports while the order is in progress.
    halfway = wait_until(lambda: (o := listed(stack, placed["id"]))["counts"]["done"] >= 1 and o, 20,
                         message="a progress report")
    assert halfway["status"] == "in_progress" and sum(halfway["counts"].values()) == 4
    final = wait_final(stack, placed["id"], timeout=30)
    assert final["counts"] == {"queued": 0, "running": 0, "done": 4, "failed": 0}
    assert wait_until(lambda: listed(stack, placed["id"])["counts"]["done"] == 4, 10, message="the last counts")

    second = order(stack, ["plum", "fig", "lime"])
    wait_until(lambda: listed(stack, second["id"])["counts"]["done"] >= 1, 20, message="a progress report")
    stack.stop_service(stack.find("master"))

    away = get_order(stack, second["id"])  # 200, never a 500
    assert away["tasks"] is None and away["tasks_unavailable"] is True
    assert away["status"] == "in_progress" and away["counts"]["done"] >= 1, "the counts of the last report"
    done = get_order(stack, placed["id"])
    assert done["status"] == "completed" and done["counts"]["done"] == 4 and done["tasks_unavailable"]
    dashboard = httpx.get(f"{stack.shared_url}/v1/dashboard", headers=stack.client_headers, timeout=10).json()
    assert dashboard["master_unavailable"] is True and dashboard["workers"] == []
    [shown] = dashboard["open_orders"]
    assert shown["id"] == second["id"] and {f["state"] for f in shown["fruits"]} == {"unknown"}
    assert shown["counts"] == away["counts"]


def test_progress_counted_earlier_than_the_kept_counts_is_ignored(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    now = datetime.now(UTC)
    try:
        placed, _ = orders.create_order(engine, ["apple", "kiwi"])
        orders.accept(engine, [placed.id])
        later = OrderProgress(order_id=placed.id, counts=FruitCounts(running=1, done=1), counted_at=now)
        earlier = OrderProgress(order_id=placed.id, counts=FruitCounts(queued=2),
                                counted_at=now - timedelta(seconds=1))
        unknown = OrderProgress(order_id=placed.id + 1000, counts=FruitCounts(done=2), counted_at=now)
        assert orders.apply_reports(engine, [], [later, unknown]) == {}
        orders.apply_reports(engine, [], [earlier])  # two Masters' reports crossed: the older one arrives last
        listed_counts = orders.list_orders(engine, None, 10, None)[0].counts
    finally:
        engine.dispose()
    assert listed_counts == FruitCounts(running=1, done=1)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,), "an unknown order is not created"
