"""Shared's metrics, in Shared's registry: salads ordered, finished, and their completion time; the open
orders gauge is read from the database at scrape time (app.OrdersCollector, registered here too)."""

from prometheus_client import Counter, Histogram

from salad.core.metrics import BUCKETS, ServiceMetrics

METRICS = ServiceMetrics("shared")
REGISTRY = METRICS.registry

ORDERS_CREATED = Counter("salad_orders_created_total", "Orders accepted by Shared.", registry=REGISTRY)
ORDERS_FINISHED = Counter(
    "salad_orders_finished_total", "Orders that reached a final state, by status (completed, failed).",
    ["status"], registry=REGISTRY,
)
SALAD_COMPLETION = Histogram(
    "salad_order_completion_seconds",
    "Salad completion time: from the order's acceptance to its last fruit done.", buckets=BUCKETS,
    registry=REGISTRY,
)

# Known label values start at zero, so rate() and increase() (and the alerts built on them) see the first one.
for _status in ("completed", "failed"):
    ORDERS_FINISHED.labels(_status)
