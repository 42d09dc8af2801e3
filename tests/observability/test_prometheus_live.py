"""A real Prometheus (Debian's package) scraping real /metrics endpoints: the rules load and evaluate, and
every dashboard query returns data that agrees with the database."""

import time
from urllib.parse import urlsplit

import pytest
from prometheus_client import start_http_server
from salad.master import metrics
from salad.core.settings import DatabaseSettings
from sqlalchemy import create_engine, text

from .prom import Prometheus, assert_every_panel_query_returns_data, free_port, panel_series
from .promql import ALERTS

ROUND = (["apple", "banana", "cherry"], ["kiwi", "apple"], ["mango"])  # one round of orders
# Counted in the database at the end (table and status names of the services' models).
DB_COUNTS = {
    "orders_completed": "SELECT count(*) FROM orders WHERE status = 'completed'",
    "tasks_succeeded": "SELECT count(*) FROM tasks WHERE status = 'succeeded'",
    "tasks_queued": "SELECT count(*) FROM tasks WHERE status = 'queued'",
    "tasks_running": "SELECT count(*) FROM tasks WHERE status = 'running'",
}


def host_port(url: str) -> str:
    return urlsplit(url).netloc


def other_name(target: str) -> str:
    """The same endpoint under another address: Prometheus sees a second instance of the same process."""
    host, port = target.rsplit(":", 1)
    return f"{'127.0.0.1' if host == 'localhost' else 'localhost'}:{port}"


def wait_for_rule_evaluations(prometheus: Prometheus, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rules = prometheus.rules()
        if rules and all(not r["lastEvaluation"].startswith("0001") for r in rules):
            return rules
        time.sleep(0.5)
    raise AssertionError(f"rules not evaluated after {timeout} s: {prometheus.rules()}")


def panel_value(prometheus: Prometheus, dashboard: dict, title: str, ref: str = "A", **labels) -> float:
    """The value of a panel's query (variables at All), of the series with the given labels."""
    series = panel_series(prometheus, dashboard, title, ref, **labels)
    assert len(series) == 1, f"{title} [{ref}] {labels}: {series}"
    return float(series[0]["value"][1])


def test_prometheus_scrapes_metrics_and_evaluates_the_rules(start_prometheus, dashboard):
    """Without the stack: Master's registry (salad.master.metrics), served by this process, under the
    salad-master job."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.REGISTRY)
    try:
        prometheus = start_prometheus({"salad-master": [f"127.0.0.1:{port}"]})
        prometheus.wait_for_targets_up(1)
        assert prometheus.value('up{job="salad-master"}') == 1
        assert metrics.LEASE_EXPIRIES.describe()[0].name == "salad_task_lease_expiries"
        # What this process counted so far (other tests in it may have expired leases), as Prometheus sees it.
        expired = metrics.REGISTRY.get_sample_value("salad_task_lease_expiries_total")
        prometheus.wait_for_value("sum(salad_task_lease_expiries_total)", expired)
        rules = wait_for_rule_evaluations(prometheus)
        assert {r["name"] for r in rules} == ALERTS
        assert all(r["health"] == "ok" for r in rules), rules
        # The helper sees panels without data (nothing was ordered here).
        with pytest.raises(AssertionError, match="Salad completion time"):
            assert_every_panel_query_returns_data(prometheus.url, dashboard)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.slow
def test_every_panel_query_returns_data_that_agrees_with_the_database(local_stack, start_prometheus,
                                                                      dashboard):
    masters = [host_port(u) for u in (getattr(local_stack, "master_urls", None) or [local_stack.master_url])]
    real_masters = "|".join(masters)
    if len(masters) == 1:  # a second replica as Prometheus sees it: same database, same gauge values
        masters.append(other_name(masters[0]))
    workers = [host_port(u) for u in local_stack.worker_urls]
    prometheus = start_prometheus({
        "salad-shared": [host_port(local_stack.shared_url)], "salad-master": masters, "salad-worker": workers,
    })
    prometheus.wait_for_targets_up(1 + len(masters) + len(workers))

    # Two rounds: a labelled series (a fruit, an outcome) is born with its first observation, which rate()
    # cannot see; the second round moves every rate() of the dashboard.
    for _ in range(2):
        for order_id in [local_stack.order(fruits) for fruits in ROUND]:
            local_stack.wait(order_id)

    engine = create_engine(DatabaseSettings(database_url=local_stack.database_url).database_url)
    with engine.connect() as db:
        counts = {name: db.execute(text(sql)).scalar_one() for name, sql in DB_COUNTS.items()}
    engine.dispose()
    assert counts["orders_completed"] >= 2 * len(ROUND)

    # Counters and histograms agree with the database once scraped.
    completed = counts["orders_completed"]
    prometheus.wait_for_value('sum(salad_orders_finished_total{status="completed"})', completed)
    prometheus.wait_for_value("sum(salad_order_completion_seconds_count)", completed)
    prometheus.wait_for_value(
        f'sum(salad_tasks_finished_total{{outcome="succeeded", instance=~"{real_masters}"}})',
        counts["tasks_succeeded"])
    prometheus.wait_for_value('sum(salad_worker_tasks_total{outcome="succeeded"})', counts["tasks_succeeded"])

    assert_every_panel_query_returns_data(prometheus.url, dashboard)

    # Database gauges, seen through the dashboard with two Master instances: equal, never doubled.
    for status in ("pending", "in_progress"):  # every order was waited for: none is open
        assert panel_value(prometheus, dashboard, "Open orders by status", status=status) == 0
    assert panel_value(prometheus, dashboard, "Live workers") == len(workers)
    assert panel_value(prometheus, dashboard, "Live workers and busy slots") == len(workers)
    assert len(panel_series(prometheus, dashboard, "Busy slots per worker")) == len(workers), "one per worker"
    assert panel_value(prometheus, dashboard, "Queue depth") == counts["tasks_queued"]
    assert panel_value(prometheus, dashboard, "Running tasks") == counts["tasks_running"]

    # The rules evaluate without error on real series.
    rules = wait_for_rule_evaluations(prometheus)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
