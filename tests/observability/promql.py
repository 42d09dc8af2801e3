"""Reading the dashboard's PromQL: its panel queries, variable substitution, and the aggregation around a
metric name, without a PromQL parser in Python (promtool does the real parsing in the tests)."""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "helm" / "salad" / "dashboards" / "salad.json"
RULES = REPO / "helm" / "salad" / "rules" / "salad-rules.yaml"
RULE_TESTS = REPO / "monitoring" / "salad-rules.test.yaml"
METRICS_DOC = REPO / "docs" / "metrics.md"

# Gauges read from the database at scrape time: every replica reports the same value, so a query must
# take max() of them, never sum() (which would double them with two replicas).
DB_GAUGES = frozenset({
    "salad_queue_depth", "salad_queue_oldest_age_seconds", "salad_tasks_running", "salad_workers_live",
    "salad_orders",
})
ALERTS = frozenset({
    "SaladBacklogNoWorkers", "SaladQueueGrowing", "SaladLeasesExpiring", "SaladOrdersFailing",
    "SaladServiceDown", "SaladCompletionSlow",
})
AGGREGATORS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'" + r"|`[^`]*`")


def load_dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> list[dict]:
    """Every panel that shows data, rows unfolded (collapsed rows keep theirs inside)."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel."""
    return [(p["title"], t["refId"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def substitute(expr: str, dashboard: dict, rate_interval: str = "1m") -> str:
    """The query Grafana would send with every variable at All and the given rate interval."""
    values = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": rate_interval}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "datasource":
            values[var["name"]] = var.get("allValue") or ".*"
    for name in sorted(values, key=len, reverse=True):
        value = values[name]
        expr = expr.replace(f"${{{name}}}", value).replace(f"[[{name}]]", value)
        expr = re.sub(rf"\${re.escape(name)}\b", lambda _, value=value: value, expr)
    if re.search(r"\$\{?\w", expr) or "[[" in expr:
        raise ValueError(f"unknown variable left in {expr!r}")
    return expr


def mask_strings(expr: str) -> str:
    """expr with the inside of every string literal blanked, so label values hide no name or parenthesis."""
    return _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], expr)


def metric_names(expr: str) -> set[str]:
    """The salad_* series names an expression reads."""
    return {m.group(0) for m in _IDENT.finditer(mask_strings(expr)) if m.group(0).startswith("salad_")}


def base_name(series: str) -> str:
    """salad_x_seconds_bucket -> salad_x_seconds (the name of the histogram)."""
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series


def _matching_open(text: str, close: int) -> int:
    depth = 0
    for i in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _word_before(text: str, end: int) -> tuple[str, int]:
    """The identifier ending just before `end` (spaces skipped) and where it starts."""
    i = end - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    j = i
    while j >= 0 and (text[j].isalnum() or text[j] in "_:"):
        j -= 1
    return text[j + 1: i + 1], j + 1


def _aggregator_of(text: str, open_paren: int) -> str | None:
    """The aggregation operator whose argument opens at `open_paren`, if it is one."""
    word, start = _word_before(text, open_paren)
    if not word:  # `max by (namespace) (...)`: step over the grouping clause
        i = open_paren - 1
        while i >= 0 and text[i].isspace():
            i -= 1
        if i < 0 or text[i] != ")":
            return None
        clause, start = _word_before(text, _matching_open(text, i))
        if clause not in ("by", "without"):
            return None
        word, start = _word_before(text, start)
    return word if word in AGGREGATORS else None


def enclosing_aggregations(expr: str, metric: str) -> list[list[str]]:
    """For each occurrence of `metric`, the aggregation operators around it, innermost first."""
    text = mask_strings(expr)
    found = []
    for m in _IDENT.finditer(text):
        if m.group(0) != metric:
            continue
        chain, depth = [], 0
        for i in range(m.start() - 1, -1, -1):
            if text[i] == ")":
                depth += 1
            elif text[i] == "(":
                if depth:
                    depth -= 1
                elif (agg := _aggregator_of(text, i)) is not None:
                    chain.append(agg)
        found.append(chain)
    return found


def db_gauges_not_under_max(expr: str) -> list[str]:
    """Database gauges in `expr` whose innermost aggregation is not max() (or that are not aggregated)."""
    wrong = []
    for gauge in DB_GAUGES:
        for chain in enclosing_aggregations(expr, gauge):
            if not chain or chain[0] != "max":
                wrong.append(f"{gauge} under {chain[0] + '()' if chain else 'no aggregation'}")
    return wrong


def documented_metrics(path: Path = METRICS_DOC) -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the metrics table of docs/metrics.md: | `name` | type | `a`, `b` | ... |"""
    rows = re.findall(r"^\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", path.read_text(), re.MULTILINE)
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
