"""The benchmark harness in smoke mode: tiny counts, one repetition, every scenario and peer.

It checks that the harness runs end to end and produces every figure, not how fast salad is. Needs bench/.venv
(bench/setup.sh: Redis, Celery, Procrastinate, PgQueuer); skipped without it.
"""

import math

import pytest

from bench.__main__ import main
from bench.infra import PEERS_PYTHON
from bench.suite import SCENARIOS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="bench/.venv missing: run bench/setup.sh"),
]

SMOKE = [
    "--quick",
    "--tasks",
    "100",
    "--dispatch-orders",
    "3",
    "--scaling-workers",
    "1,2",
    "--scaling-tasks-per-worker",
    "4",
    "--salads",
    "1",
    "--history-tasks",
    "1000",
    "--workers",
    "1",
    "--slots",
    "4",
    "--settle",
    "0.2",
]
FLEET_SMOKE = [
    "--scenarios",
    "fleet",
    "--reps",
    "1",
    "--fleet-workers",
    "50",
    "--fleet-processes",
    "2",
    "--fleet-idle-seconds",
    "3",
    "--fleet-dispatch-orders",
    "5",
    "--fleet-tasks",
    "500",
    "--fleet-churn-seconds",
    "4",
    "--fleet-churn-per-minute",
    "300",
    "--settle",
    "0.2",
]


def test_quick_mode_produces_every_figure(tmp_path):
    scenarios = ",".join(s for s in SCENARIOS if s != "fleet")  # the fleet has its own test, below
    results = main([*SMOKE, "--scenarios", scenarios, "--out", str(tmp_path)])

    assert (tmp_path / "results.json").exists()
    figures = {f["key"]: f for f in results["figures"]}
    expected = [
        "machine.python_workload_ms",
        "machine.cpu_stolen_percent",
        "throughput.tasks_per_s",
        "throughput.latency_p50_ms",
        "throughput.latency_p95_ms",
        "throughput.latency_p99_ms",
        "memory.shared_peak_rss_mib",
        "memory.master_peak_rss_mib",
        "memory.worker-1_peak_rss_mib",
        "dispatch.queued_to_claimed_p50_ms",
        "dispatch.queued_to_claimed_p99_ms",
        "dispatch.order_to_claimed_p50_ms",
        "dispatch.queued_to_done_p50_ms",
        "scaling.2.speedup",
        "scaling.2.efficiency",
        "makespan.salad.order_to_done_ratio",
        "makespan.seed.order_to_done_ratio",
        "history.tasks_per_s",
        "history.ratio_to_empty",
        *[
            f"peers.{peer}.{kind}"
            for peer in ("celery", "procrastinate", "pgqueuer")
            for kind in ("end_to_end_tasks_per_s", "drain_tasks_per_s", "ratio_end_to_end")
        ],
    ]
    missing = [key for key in expected if key not in figures]
    assert not missing, f"figures not reported: {missing}"
    for key, figure in figures.items():
        assert "median" in figure, f"{key} has no value"
        assert figure["min"] <= figure["median"] <= figure["max"], key
        assert math.isfinite(figure["median"]), key
    assert results["machine"]["cores"] >= 1


def test_fleet_smoke_produces_every_fleet_figure(tmp_path):
    """50 simulated workers, every phase of the fleet run shortened: each figure is there, no task lost."""
    results = main([*FLEET_SMOKE, "--out", str(tmp_path)])

    figures = {f["key"]: f for f in results["figures"] if f["key"].startswith("fleet.")}
    run = results["runs"][0]["fleet"]
    assert "error" not in run, run.get("error")
    expected = [
        "fleet.idle.cpu_share_of_core",
        "fleet.idle.http_requests_per_s",
        "fleet.idle.pg_transactions_per_s",
        "fleet.idle.pg_statements_per_s",
        "fleet.idle.master_rss_mib",
        "fleet.idle.pg_connections_max",
        "fleet.idle.pg_connections_active_max",
        "fleet.dispatch.queued_to_claimed_p50_ms",
        "fleet.dispatch.queued_to_claimed_p99_ms",
        "fleet.dispatch.queued_to_done_p50_ms",
        "fleet.dispatch.queued_to_done_p99_ms",
        "fleet.dispatch.order_to_done_p50_ms",
        "fleet.dispatch.order_to_done_p99_ms",
        "fleet.dispatch.statements_per_task",
        "fleet.dispatch.statements_per_task_in_phase",
        "fleet.dispatch.task_statements_per_task",
        "fleet.dispatch.transactions_per_task",
        "fleet.throughput.tasks_per_s",
        "fleet.throughput.latency_p50_ms",
        "fleet.throughput.latency_p99_ms",
        "fleet.churn.steady_queued_to_claimed_p99_ms",
        "fleet.churn.churn_queued_to_claimed_p99_ms",
        "fleet.churn.workers_left",
        "fleet.churn.tasks_lost",
        "fleet.churn.tasks_run_twice",
        "fleet.churn.leases_expired",
    ]
    missing = [key for key in expected if key not in figures]
    assert not missing, f"figures not reported: {missing}"
    for key, figure in figures.items():
        assert "median" in figure, f"{key} has no value"
        assert math.isfinite(figure["median"]), key
    assert run["churn"]["workers_left"] > 0
    assert run["churn"]["tasks_lost"] == 0
    assert run["churn"]["tasks_run_twice"] == 0
