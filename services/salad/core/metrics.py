"""What the metrics of every service share: the buckets, and a registry per service with the HTTP metrics and
the process collectors in it.

Each service defines its own metrics in its own registry (shared/metrics.py, master/metrics.py,
worker/metrics.py) and its /metrics serves that registry alone: in prometheus-client's default registry every
process exported every service's metrics, Master a `salad_worker_slots 0` and a worker Master's task counters,
series that dashboards summed or listed as if they were real.

Counters and histograms count what this process did; gauges of shared state (queue depth, live workers,
open orders by status) are read from the database at scrape time by each service's collector, so every
replica reports the same value: dashboards take max(), never sum(), of them.
"""

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# From a millisecond to ten minutes: dispatch is fast, salads take minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class ServiceMetrics:
    """One service's registry, which its /metrics serves, holding what every service exports: its HTTP
    requests and their latency (labelled with `service`), and prometheus-client's process, platform and
    garbage collector metrics."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.http_requests = Counter(
            "salad_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["service", "route", "method", "status"], registry=self.registry,
        )
        self.http_latency = Histogram(
            "salad_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method (requests held open on purpose, "
            "long-polls that waited and event streams, left out).",
            ["service", "route", "method"], buckets=BUCKETS, registry=self.registry,
        )


def observe_by_label(histogram: Histogram, samples: Iterable[tuple[str, float]]) -> None:
    """Observe a batch of (label, seconds) samples, looking each label's child up once: per sample, `labels()`
    cost Master as much as the observation itself (a batch of results or claims has few distinct fruits)."""
    children = {}
    for label, seconds in samples:
        child = children.get(label)
        if child is None:
            child = children[label] = histogram.labels(label)
        child.observe(seconds)
