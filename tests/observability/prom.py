"""A real Prometheus for the tests: config from salad.cli.prometheus, a process on a free port
with its own storage directory, queries through the HTTP API, and the check that every dashboard query
returns data."""

import math
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from salad.cli import prometheus as local_prometheus
from salad.cli.prometheus import APT_HINT
from salad.cli.stack import free_port

from .promql import panel_queries, substitute

READY_TIMEOUT = 30.0  # seconds for Prometheus to open its TSDB and answer /-/ready


def require_binary(name: str) -> str:
    """The path of prometheus or promtool; fails (never skips) with the package to install."""
    path = shutil.which(name)
    assert path, f"{name} not found on PATH: {APT_HINT}"
    return path


@dataclass
class Prometheus:
    url: str
    log: Path

    def query(self, expr: str) -> list[dict]:
        """The result of an instant query (a list of {metric, value}); raises on a query error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"query {expr!r} failed: {body}"
        result = body["data"]["result"]
        return result if body["data"]["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr!r} returned {len(result)} series: {result}"
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]

    def rules(self) -> list[dict]:
        groups = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def wait_for_targets_up(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` targets have been scraped successfully."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.targets()
            if len(targets) == count and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.5)
        raise AssertionError(f"targets not all up after {timeout} s: "
                             f"{[(t['scrapeUrl'], t['health'], t['lastError']) for t in targets]}")

    def wait_for_value(self, expr: str, expected: float, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.value(expr)) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert got == expected, f"{expr!r} = {got}, expected {expected}"


@contextmanager
def run_prometheus(config: str, workdir: Path):
    """A Prometheus process with `config`, on a free local port, storing in workdir; stopped on exit."""
    require_binary("prometheus")
    port, log = free_port(), workdir / "prometheus.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = local_prometheus.start(config, workdir, port, out)
    prometheus = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(prometheus, process)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(prometheus: Prometheus, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    log = prometheus.log.read_text()[-3000:]
    raise AssertionError(f"Prometheus not ready (exit code {process.poll()}):\n{log}")


def panel_series(prometheus: Prometheus, dashboard: dict, title: str, ref: str = "A", **labels) -> list[dict]:
    """The series of a panel's query (variables at All) with the given labels."""
    expr = next(e for t, r, e in panel_queries(dashboard) if (t, r) == (title, ref))
    return [s for s in prometheus.query(substitute(expr, dashboard))
            if all(s["metric"].get(k) == v for k, v in labels.items())]


def assert_every_panel_query_returns_data(prom_url: str, dashboard: dict, rate_interval: str = "1m",
                                          finite: bool = True) -> None:
    """Every query of every panel, with the variables at All, returns at least one series (with a finite
    value when `finite`: a quantile over no observations is NaN, which a panel shows as no data)."""
    prometheus = Prometheus(prom_url, Path("/dev/null"))
    empty = []
    for title, ref, expr in panel_queries(dashboard):
        query = substitute(expr, dashboard, rate_interval)
        values = [float(series["value"][1]) for series in prometheus.query(query)]
        if not values or (finite and not any(math.isfinite(v) for v in values)):
            empty.append(f"{title} [{ref}]: {query} -> {values}")
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
