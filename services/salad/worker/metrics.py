"""A worker's metrics, in the worker's registry, which its probe server's /metrics serves."""

from prometheus_client import Counter, Gauge

from salad.core.metrics import ServiceMetrics

METRICS = ServiceMetrics("worker")
REGISTRY = METRICS.registry

WORKER_SLOTS = Gauge("salad_worker_slots", "Tasks this worker can prepare at once.", registry=REGISTRY)
WORKER_BUSY_SLOTS = Gauge("salad_worker_busy_slots", "Tasks this worker is preparing now.", registry=REGISTRY)
WORKER_TASKS = Counter(
    "salad_worker_tasks_total",
    "Tasks this worker finished, by outcome (succeeded, timed_out, released, lost).",
    ["outcome"], registry=REGISTRY,
)

# Known label values start at zero, so rate() and increase() see the first one.
for _outcome in ("succeeded", "timed_out", "released", "lost"):
    WORKER_TASKS.labels(_outcome)
