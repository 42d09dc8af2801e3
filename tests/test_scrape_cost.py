"""A scrape of Shared's /metrics costs what the work in flight costs, whatever the number of finished orders:
the SQL its collector runs, explained with ANALYZE on 200,000 finished orders, reads none of them."""

import psycopg
import pytest
from prometheus_client.core import Metric
from salad.core.db import make_engine
from salad.shared.app import OrdersCollector
from sqlalchemy import event

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


def scrape(collector: OrdersCollector, engine) -> tuple[list[Metric], list[tuple[str, dict]]]:
    """The collector's metrics, and every statement it ran with its parameters."""
    statements = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        return list(collector.collect()), statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("statistics", ["none yet", "analyzed"])
def test_the_orders_gauge_reads_no_finished_order(postgres_url, statistics):
    insert_orders(postgres_url)
    if statistics == "analyzed":
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ANALYZE orders")
    engine = make_engine(postgres_url, pool_size=1)
    try:
        metrics, statements = scrape(OrdersCollector(engine), engine)
        assert statements, "the collector read the database"
        with engine.connect() as connection:
            plans = [connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql,
                                                parameters).scalar_one()[0]["Plan"]
                     for sql, parameters in statements]
    finally:
        engine.dispose()

    for plan in plans:
        nodes = list(plan_nodes(plan))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], plan
        assert sum(rows_examined(n) for n in nodes) <= 4 * sum(OPEN.values()), plan
        assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] <= MOST_BLOCKS, plan

    [gauge] = metrics
    assert {s.labels["status"]: s.value for s in gauge.samples} == OPEN
