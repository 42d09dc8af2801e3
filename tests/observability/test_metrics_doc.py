"""docs/metrics.md documents every metric the services define, with its type and labels."""

import re

from prometheus_client.metrics import MetricWrapperBase
from salad.core import metrics
from salad.master import metrics as master_metrics
from salad.shared import metrics as shared_metrics
from salad.worker import metrics as worker_metrics

from .promql import DB_GAUGES, METRICS_DOC, documented_metrics


def defined_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) of the metrics the services define (counters named with _total): each
    service's own and the HTTP metrics every service has."""
    found = {}
    namespaces = (metrics.ServiceMetrics("any"), master_metrics, shared_metrics, worker_metrics)
    for metric in [value for namespace in namespaces for value in vars(namespace).values()]:
        if isinstance(metric, MetricWrapperBase):
            described = metric.describe()[0]
            name = described.name + ("_total" if described.type == "counter" else "")
            found[name] = (described.type, set(metric._labelnames))
    return found


def test_every_defined_metric_is_documented_with_its_type_and_labels():
    documented = documented_metrics()
    for name, (kind, labels) in defined_metrics().items():
        assert name in documented, f"{name} is missing from docs/metrics.md"
        assert documented[name] == (kind, labels), name


def test_database_gauges_are_documented():
    documented = documented_metrics()
    for gauge in DB_GAUGES:
        assert documented[gauge][0] == "gauge", gauge


def test_the_documented_buckets_are_the_code_s():
    line = re.search(r"^0\.001, .*\.$", METRICS_DOC.read_text(), re.MULTILINE).group(0)
    assert tuple(float(b) for b in line.rstrip(".").split(", ")) == tuple(float(b) for b in metrics.BUCKETS)
