"""What Shared reads on a timer costs what the work in flight costs, whatever the number of finished orders:
the SQL of a scrape of /metrics and of a dashboard read (twice a second while a web page is open), explained
with ANALYZE on 200,000 finished orders, reads none of them, but the newest few the dashboard lists."""

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from salad.contracts.internal import OrderReport
from salad.core.db import make_engine
from salad.core.models import OrderStatus
from salad.shared import orders
from salad.shared.app import OrdersCollector
from salad.shared.dashboard import RECENT_SCAN, read_dashboard
from sqlalchemy import event, text

FINISHED = 200_000
OPEN = {"pending": 3, "in_progress": 2}
MOST_BLOCKS = 20  # buffers a scrape may touch; the finished orders alone fill over 2,000


def insert_orders(url: str) -> None:
    """FINISHED finished orders, then the open ones, as generate_series rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO orders (fruits, priority, status, created_at, completed_at, master_version)
            SELECT '["apple", "kiwi"]', 0, CASE WHEN i %% 50 = 0 THEN 'failed' ELSE 'completed' END,
                   now(), now(), 1
            FROM generate_series(1, %s) AS i""", (FINISHED,))
        for status, n in OPEN.items():
            conn.execute("""
                INSERT INTO orders (fruits, priority, status, created_at, master_version)
                SELECT '["apple"]', 0, %s, now(), 0 FROM generate_series(1, %s)""", (status, n))


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def rows_examined(node: dict) -> float:
    """Rows a plan node produced or looked at and threw away."""
    return (node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0))


def run_and_explain(read, postgres_url: str, statistics: str):
    """What `read(engine)` returns, on FINISHED finished orders and the OPEN ones, and the plan of every
    statement it ran, run again under EXPLAIN ANALYZE."""
    insert_orders(postgres_url)
    if statistics == "analyzed":
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ANALYZE orders")
    engine = make_engine(postgres_url, pool_size=1)
    statements = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        result = read(engine)
        event.remove(engine, "before_cursor_execute", record)
        assert statements, "the read ran SQL"
        with engine.connect() as connection:
            plans = [connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql,
                                                parameters).scalar_one()[0]["Plan"]
                     for sql, parameters in statements]
    finally:
        engine.dispose()
    return result, plans


def assert_cheap(plans: list[dict], most_rows: int, most_blocks: int) -> None:
    """No plan scans a whole table, examines more than `most_rows` rows or touches more than `most_blocks`."""
    for plan in plans:
        nodes = list(plan_nodes(plan))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], plan
        assert sum(rows_examined(n) for n in nodes) <= most_rows, plan
        assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] <= most_blocks, plan


@pytest.mark.parametrize("statistics", ["none yet", "analyzed"])
def test_the_orders_gauge_reads_no_finished_order(postgres_url, statistics):
    metrics, plans = run_and_explain(lambda engine: list(OrdersCollector(engine).collect()), postgres_url,
                                     statistics)
    assert_cheap(plans, 4 * sum(OPEN.values()), MOST_BLOCKS)
    [gauge] = metrics
    assert {s.labels["status"]: s.value for s in gauge.samples} == OPEN


@pytest.mark.parametrize("statistics", ["none yet", "analyzed"])
def test_the_dashboard_reads_no_finished_order_but_the_newest(postgres_url, statistics):
    dashboard, plans = run_and_explain(lambda engine: read_dashboard(engine, master=None), postgres_url,
                                       statistics)
    assert_cheap(plans, 4 * (sum(OPEN.values()) + RECENT_SCAN), 4 * MOST_BLOCKS)
    assert dashboard.open_total == sum(OPEN.values())


def test_the_dashboard_totals_follow_status_changes_and_outlive_retention(postgres_url):
    engine = make_engine(postgres_url)
    done_at = datetime.now(UTC)

    def report(order_id: int, version: int, status: OrderStatus) -> OrderReport:
        finished = status in (OrderStatus.COMPLETED, OrderStatus.FAILED)
        return OrderReport(order_id=order_id, version=version, status=status,
                           finished_at=done_at if finished else None)

    def totals() -> tuple[int, int]:
        dashboard = read_dashboard(engine, master=None)
        return dashboard.completed, dashboard.failed

    try:
        first, second, third = (orders.create_order(engine, ["kiwi"])[0].id for _ in range(3))
        orders.accept(engine, [first, second, third])
        orders.apply_reports(engine, [report(first, 1, OrderStatus.COMPLETED),
                                      report(second, 1, OrderStatus.FAILED)])
        assert totals() == (1, 1)
        orders.apply_reports(engine, [report(second, 1, OrderStatus.FAILED)])  # sent again: a no-op
        assert totals() == (1, 1)
        # The second resumed and completed (one report may skip the state between); the third failed and
        # resumed within one batch.
        orders.apply_reports(engine, [report(second, 3, OrderStatus.COMPLETED),
                                      report(third, 1, OrderStatus.FAILED),
                                      report(third, 2, OrderStatus.IN_PROGRESS)])
        assert totals() == (2, 0)
        assert orders.prune_finished(engine, done_at + timedelta(seconds=1), 100) == 2
        assert totals() == (2, 0), "all time: retention deletes orders, not what they counted"
    finally:
        engine.dispose()


def test_the_dashboard_totals_stay_exact_under_crossing_report_batches(postgres_url):
    """Reports sent from several threads at once, in batches that cross (as two Masters' relays do), each
    applied in one statement: no deadlock, and the totals equal a count of the orders."""
    engine = make_engine(postgres_url, pool_size=4)
    rng = random.Random(7)
    statuses = [OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.IN_PROGRESS]

    def batch(ids: list[int]) -> list[OrderReport]:
        return [OrderReport(order_id=i, version=rng.randint(1, 20), status=(status := rng.choice(statuses)),
                            finished_at=None if status == OrderStatus.IN_PROGRESS else datetime.now(UTC))
                for i in ids]

    try:
        ids = [order.id for order, _ in (orders.create_order(engine, ["kiwi"]) for _ in range(30))]
        orders.accept(engine, ids)
        batches = [batch(rng.sample(ids, 12)) for _ in range(80)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda reports: orders.apply_reports(engine, reports), batches))
        with engine.connect() as conn:
            counted = dict(conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status")).all())
        dashboard = read_dashboard(engine, master=None)
        expected = (counted.get("completed", 0), counted.get("failed", 0))
        assert (dashboard.completed, dashboard.failed) == expected
        assert dashboard.completed and dashboard.failed
    finally:
        engine.dispose()
