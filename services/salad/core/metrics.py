"""Prometheus metrics of every service: one place for names, help texts, labels and buckets.

Counters and histograms count what this process did; gauges of shared state (queue depth, live workers,
open orders by status) are read from the database at scrape time by each service's collector, so every
replica reports the same value: dashboards take max(), never sum(), of them.
"""

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

# From a millisecond to ten minutes: dispatch is fast, salads take minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

# --- HTTP, every service -------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "salad_http_requests_total", "HTTP requests answered, by route template, method and status code.",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "salad_http_request_duration_seconds", "Time to answer an HTTP request, by route template and method.",
    ["service", "route", "method"], buckets=BUCKETS,
)

# --- Master: task life cycle ---------------------------------------------------------------------
TASK_QUEUE_WAIT = Histogram(
    "salad_task_queue_wait_seconds", "Time a task waited queued before a worker claimed it.",
    ["fruit"], buckets=BUCKETS,
)
TASK_EXECUTION = Histogram(
    "salad_task_execution_seconds", "Time from a task's claim to its result.", ["fruit"], buckets=BUCKETS,
)
TASK_LATENCY = Histogram(
    "salad_task_latency_seconds", "Time from a task's creation to its success (end to end).",
    ["fruit"], buckets=BUCKETS,
)
TASKS_FINISHED = Counter(
    "salad_tasks_finished_total", "Tasks that reached a final state, by outcome (succeeded, failed).",
    ["outcome"],
)
TASK_RETRIES = Counter(
    "salad_task_retries_total", "Tasks put back in the queue for another attempt, by reason.", ["reason"],
)
LEASE_EXPIRIES = Counter(
    "salad_task_lease_expiries_total", "Leases that expired because their worker stopped heartbeating.",
)
ORDERS_FINISHED_BY_MASTER = Counter(
    "salad_master_orders_finished_total", "Orders whose last task this Master recorded, by outcome.",
    ["outcome"],
)

# --- Shared: salads ------------------------------------------------------------------------------
ORDERS_CREATED = Counter("salad_orders_created_total", "Orders accepted by Shared.")
ORDERS_FINISHED = Counter(
    "salad_orders_finished_total", "Orders that reached a final state, by status (completed, failed).",
    ["status"],
)
SALAD_COMPLETION = Histogram(
    "salad_order_completion_seconds", "Salad completion time: from the order's acceptance to its last fruit done.",
    buckets=BUCKETS,
)

# --- Worker --------------------------------------------------------------------------------------
WORKER_SLOTS = Gauge("salad_worker_slots", "Tasks this worker can prepare at once.")
WORKER_BUSY_SLOTS = Gauge("salad_worker_busy_slots", "Tasks this worker is preparing now.")
WORKER_TASKS = Counter(
    "salad_worker_tasks_total",
    "Tasks this worker finished, by outcome (succeeded, timed_out, released, lost).",
    ["outcome"],
)

# Label values known up front start at zero, so rate() and increase() (and the alerts built on them) see
# the very first event instead of a series appearing out of nothing.
for _outcome in ("succeeded", "failed"):
    TASKS_FINISHED.labels(_outcome)
    ORDERS_FINISHED_BY_MASTER.labels(_outcome)
for _reason in ("lease_expired", "released", "error", "timeout"):
    TASK_RETRIES.labels(_reason)
for _status in ("completed", "failed"):
    ORDERS_FINISHED.labels(_status)
for _outcome in ("succeeded", "timed_out", "released", "lost"):
    WORKER_TASKS.labels(_outcome)


def observe_by_label(histogram: Histogram, samples: Iterable[tuple[str, float]]) -> None:
    """Observe a batch of (label, seconds) samples, looking each label's child up once: per sample, `labels()`
    cost Master as much as the observation itself (a batch of results or claims has few distinct fruits)."""
    children = {}
    for label, seconds in samples:
        child = children.get(label)
        if child is None:
            child = children[label] = histogram.labels(label)
        child.observe(seconds)
