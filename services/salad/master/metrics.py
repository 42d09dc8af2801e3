"""Master's metrics, in Master's registry: the task life cycle's (observed by task_metrics.py); the queue
gauges are read from the database at scrape time (app.QueueCollector, registered here too)."""

from prometheus_client import Counter, Histogram

from salad.core.metrics import BUCKETS, ServiceMetrics

METRICS = ServiceMetrics("master")
REGISTRY = METRICS.registry

TASK_QUEUE_WAIT = Histogram(
    "salad_task_queue_wait_seconds", "Time a task waited queued before a worker claimed it.",
    ["fruit"], buckets=BUCKETS, registry=REGISTRY,
)
TASK_EXECUTION = Histogram(
    "salad_task_execution_seconds", "Time from a task's claim to its result.", ["fruit"], buckets=BUCKETS,
    registry=REGISTRY,
)
TASK_LATENCY = Histogram(
    "salad_task_latency_seconds", "Time from a task's creation to its success (end to end).",
    ["fruit"], buckets=BUCKETS, registry=REGISTRY,
)
TASKS_FINISHED = Counter(
    "salad_tasks_finished_total", "Tasks that reached a final state, by outcome (succeeded, failed).",
    ["outcome"], registry=REGISTRY,
)
TASK_RETRIES = Counter(
    "salad_task_retries_total", "Tasks put back in the queue for another attempt, by reason.", ["reason"],
    registry=REGISTRY,
)
LEASE_EXPIRIES = Counter(
    "salad_task_lease_expiries_total", "Leases that expired because their worker stopped heartbeating.",
    registry=REGISTRY,
)
ORDERS_FINISHED_BY_MASTER = Counter(
    "salad_master_orders_finished_total", "Orders whose last task this Master recorded, by outcome.",
    ["outcome"], registry=REGISTRY,
)
EXCHANGE_BATCH = Histogram(
    "salad_master_exchange_batch_requests", "Workers' requests (exchanges, claims) run together in one exchange "
    "statement: more under load, 1 when requests come one at a time.",
    buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY,
)

# Label values known up front start at zero, so rate() and increase() (and the alerts built on them) see
# the very first event instead of a series appearing out of nothing.
for _outcome in ("succeeded", "failed"):
    TASKS_FINISHED.labels(_outcome)
    ORDERS_FINISHED_BY_MASTER.labels(_outcome)
for _reason in ("lease_expired", "released", "error", "timeout"):
    TASK_RETRIES.labels(_reason)
