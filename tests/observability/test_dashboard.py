"""Static checks of the Grafana dashboard: model, variables, panels, and every query parsed by promtool."""

import json
import re
import subprocess

import pytest

from .prom import require_binary
from .promql import (
    DB_GAUGES,
    base_name,
    db_gauges_not_under_max,
    documented_metrics,
    load_dashboard,
    metric_names,
    panel_queries,
    panels,
    substitute,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NAMESPACE_MATCHER = 'namespace=~"$namespace"'
REQUIRED_PANELS = {
    "Salads per minute", "Salad completion time", "Task queue wait", "Task execution",
    "Task end-to-end latency", "Queue depth", "Oldest queued task age", "Running tasks",
    "Live workers and busy slots", "Task outcomes per minute", "Retries and lease expiries per minute",
    "HTTP requests per second", "HTTP 5xx ratio", "HTTP latency p95", "Open orders by status",
    "Memory per instance",
}
QUERIES = panel_queries(load_dashboard())


def test_dashboard_model():
    dashboard = load_dashboard()
    assert dashboard["uid"] == "salad"
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["id"] is None  # provisioned dashboards get their id from Grafana
    every = dashboard["panels"] + [child for p in dashboard["panels"] for child in p.get("panels", [])]
    titles, ids = [p["title"] for p in every], [p["id"] for p in every]
    assert REQUIRED_PANELS <= set(titles)
    assert len(set(titles)) == len(titles), "two panels have the same title"
    assert len(set(ids)) == len(ids), "two panels have the same id"


def test_variables():
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "job"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job"):
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] is True
        assert variables[name]["current"]["value"] == ["$__all"]
    # All must also match series without a namespace label (a local Prometheus): the empty string.
    assert variables["namespace"]["allValue"] == ".*"
    assert re.fullmatch(variables["job"]["allValue"], "salad-worker")


def test_every_panel_has_targets_on_the_datasource_variable():
    for panel in panels(load_dashboard()):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panels_fit_the_grid_without_overlapping():
    taken = set()
    for panel in load_dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        columns, lines = range(pos["x"], pos["x"] + pos["w"]), range(pos["y"], pos["y"] + pos["h"])
        cells = {(x, y) for x in columns for y in lines}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("title,ref,expr", QUERIES, ids=[f"{t}[{r}]" for t, r, _ in QUERIES])
def test_query_selects_by_namespace(title, ref, expr):
    selectors = re.findall(r"\b([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr)
    names = {m for m in re.findall(r"\b(salad_\w+|up|process_\w+)\b", expr)}
    assert {s for s, _ in selectors} == names, f"a metric without a selector in {expr}"
    for name, matchers in selectors:
        assert NAMESPACE_MATCHER in matchers, f"{name} is not filtered by $namespace in {expr}"


@pytest.mark.parametrize("title,ref,expr", QUERIES, ids=[f"{t}[{r}]" for t, r, _ in QUERIES])
def test_database_gauges_are_not_summed_across_replicas(title, ref, expr):
    assert db_gauges_not_under_max(expr) == []


def test_every_database_gauge_is_on_the_dashboard():
    shown = set().union(*(metric_names(expr) for _, _, expr in QUERIES))
    assert DB_GAUGES <= shown


def test_queries_read_documented_metrics():
    documented = documented_metrics()
    read = {base_name(n) for _, _, expr in QUERIES for n in metric_names(expr)}
    assert read - set(documented) == set()


def _promtool_check(exprs: list[str], tmp_path) -> subprocess.CompletedProcess:
    """promtool check rules on one recording rule per expression (a JSON rule file is valid YAML): promtool
    parses each with Prometheus's own PromQL parser."""
    rules = [{"record": f"salad:dashboard_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run([require_binary("promtool"), "check", "rules", str(path)],
                          check=False, capture_output=True, text=True, timeout=60)


def test_every_query_parses(tmp_path):
    dashboard = load_dashboard()
    exprs = [substitute(expr, dashboard) for _, _, expr in QUERIES]
    done = _promtool_check(exprs, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_the_parse_check_catches_a_broken_query(tmp_path):
    done = _promtool_check(['sum(rate(salad_http_requests_total{job="x"}[1m])'], tmp_path)
    assert done.returncode != 0


def test_variables_are_substituted_with_their_all_value():
    dashboard = load_dashboard()
    query = substitute('rate(up{namespace=~"$namespace", job=~"${job}"}[$__rate_interval])', dashboard, "2m")
    assert query == 'rate(up{namespace=~".*", job=~".*salad-(shared|master|worker)"}[2m])'
    with pytest.raises(ValueError):
        substitute("up{x=~\"$nope\"}", dashboard)


@pytest.mark.parametrize("expr,wrong", [
    ("max(salad_queue_depth)", []),
    ('max by (namespace) (salad_queue_depth{job=~"a(b)"})', []),
    ("max(salad_queue_depth) by (namespace)", []),
    ("sum(max by (status) (salad_orders))", []),
    ("max by (namespace) (deriv(salad_queue_depth[5m])) > 0", []),
    ("sum(rate(salad_orders_created_total[1m]))", []),
    ("sum(salad_queue_depth)", ["salad_queue_depth under sum()"]),
    ("sum by (status) (salad_orders)", ["salad_orders under sum()"]),
    ("max(sum by (instance) (salad_workers_live))", ["salad_workers_live under sum()"]),
    ("salad_tasks_running", ["salad_tasks_running under no aggregation"]),
    ("avg(x) and on (namespace) (salad_tasks_running)", ["salad_tasks_running under no aggregation"]),
])
def test_the_max_check_itself(expr, wrong):
    assert db_gauges_not_under_max(expr) == wrong
