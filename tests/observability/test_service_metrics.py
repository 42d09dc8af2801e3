"""What the services' /metrics show, on a stack of processes: each service exports its own metrics only; a
request held open on purpose (a worker's long-poll that waited, an event stream) is counted but not timed;
the dashboard's panels and the queries `salad up --prometheus` prints show what they claim."""

import math

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from salad.cli.prometheus import TRY_QUERIES

from tests.helpers import order, wait_final, wait_until

from .prom import panel_series

CLAIM_WAIT = "0.5"  # seconds an idle worker's long-poll is held: several end within a test
EXCHANGE = "/v1/tasks/exchange"
EVERY_SERVICE = {"salad_http_requests", "salad_http_request_duration_seconds"}  # counters without _total
OWN = {
    "shared": {"salad_orders_created", "salad_orders_finished", "salad_order_completion_seconds",
               "salad_orders"},
    "master": {"salad_task_queue_wait_seconds", "salad_task_execution_seconds", "salad_task_latency_seconds",
               "salad_tasks_finished", "salad_task_retries", "salad_task_lease_expiries",
               "salad_master_orders_finished", "salad_queue_depth", "salad_queue_oldest_age_seconds",
               "salad_tasks_running", "salad_workers_live", "salad_master_exchange_batch_requests"},
    "worker": {"salad_worker_slots", "salad_worker_busy_slots", "salad_worker_tasks"},
}


@pytest.fixture
def stack(make_stack, postgres_url):
    """Shared, Master and one worker whose idle long-polls are held CLAIM_WAIT seconds."""
    stack = make_stack(postgres_url, workers=0, time_scale=0.05,
                       env={"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"})
    stack.add_worker(SALAD_CLAIM_WAIT=CLAIM_WAIT)
    return stack


def scrape(url: str) -> dict[str, list]:
    """The metric families of a /metrics page: name -> samples (without the `_created` timestamps
    prometheus-client adds as families of their own)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    timestamps = {f"{name}_created" for name, f in families.items() if f.type in ("counter", "histogram")}
    return {name: family.samples for name, family in families.items() if name not in timestamps}


def route_samples(families: dict[str, list], family: str, route: str, suffix: str) -> float:
    """The sum of a family's samples named with `suffix` of one route."""
    return sum(s.value for s in families.get(family, [])
               if s.name.endswith(suffix) and s.labels.get("route") == route)


def test_each_service_exports_its_own_metrics_only(stack):
    wait_final(stack, order(stack, ["apple", "kiwi"])["id"])  # labelled series of every service are born
    urls = {"shared": stack.shared_url, "master": stack.master_url, "worker": stack.worker_services[0].url}
    exported = {service: set(scrape(url)) for service, url in urls.items()}
    for service, names in exported.items():
        salad = {name for name in names if name.startswith("salad_")}
        others = set().union(*(own for other, own in OWN.items() if other != service))
        assert salad & others == set(), f"{service} exports another service's metrics"
        assert salad <= EVERY_SERVICE | OWN[service], f"{service} exports metrics of no service"
        assert "process_resident_memory_bytes" in names, f"{service} lost the process metrics"
    for service in ("shared", "master"):
        assert not [name for name in exported[service] if name.startswith("salad_worker_")], service
    assert OWN["worker"] <= exported["worker"]
    assert {"salad_orders_created", "salad_order_completion_seconds"} <= exported["shared"]
    assert {"salad_queue_depth", "salad_task_latency_seconds"} <= exported["master"]


def test_requests_held_open_are_counted_but_not_timed(stack):
    def exchanges() -> float:
        return route_samples(scrape(stack.master_url), "salad_http_requests", EXCHANGE, "_total")

    start = exchanges()
    wait_until(lambda: exchanges() >= start + 3, 30, message="three long-polls answered")
    master = scrape(stack.master_url)
    assert route_samples(master, "salad_http_request_duration_seconds", EXCHANGE, "_count") == 0
    assert route_samples(master, "salad_http_request_duration_seconds", "/readyz", "_count") > 0, \
        "a request answered at once is timed"

    url = f"{stack.shared_url}/v1/events"
    with httpx.stream("GET", url, headers=stack.client_headers, timeout=10) as events:
        assert events.status_code == 200
        next(events.iter_lines())
    wait_until(lambda: route_samples(scrape(stack.shared_url), "salad_http_requests", "/v1/events", "_total"),
               10, message="the event stream counted")
    shared = scrape(stack.shared_url)
    assert route_samples(shared, "salad_http_request_duration_seconds", "/v1/events", "_count") == 0


def test_the_dashboard_and_the_printed_queries_show_what_they_claim(stack, start_prometheus, dashboard):
    worker = stack.worker_services[0]
    prometheus = start_prometheus({"salad-shared": [stack.shared_url.removeprefix("http://")],
                                   "salad-master": [stack.master_url.removeprefix("http://")],
                                   "salad-worker": [worker.url.removeprefix("http://")]})
    prometheus.wait_for_targets_up(3)

    # The idle worker long-polls: Master answers it every CLAIM_WAIT seconds, but not as latency. Four more
    # after the first scrape that saw any: a rate() over the scrapes between would show them if timed.
    def exchanges() -> float:
        return prometheus.value(f'sum(salad_http_requests_total{{route="{EXCHANGE}"}})') or 0.0

    first = wait_until(exchanges, 30, message="long-polls scraped")
    wait_until(lambda: exchanges() >= first + 4, 30, message="more long-polls scraped")
    latency = panel_series(prometheus, dashboard, "HTTP latency p95 by route")
    assert latency, "the panel shows the other routes"
    assert [s for s in latency if s["metric"]["route"] == EXCHANGE] == []

    wait_final(stack, order(stack, ["apple", "kiwi"])["id"])
    busy = panel_series(prometheus, dashboard, "Busy slots per worker")
    assert [s["metric"]["job"] for s in busy] == ["salad-worker"], "one series per worker"
    for query in TRY_QUERIES:
        wait_until(lambda: any(math.isfinite(float(s["value"][1])) for s in prometheus.query(query)), 30,
                   message=f"{query} shows data")
