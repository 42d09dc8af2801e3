"""The alert rules: valid for promtool, unit-tested by promtool, complete, correct with several replicas."""

import subprocess

import pytest
import yaml

from .prom import require_binary
from .promql import (
    ALERTS,
    REPO,
    RULE_TESTS,
    RULES,
    base_name,
    db_gauges_not_under_max,
    documented_metrics,
    metric_names,
)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("promtool"), *args], cwd=REPO, check=False, capture_output=True,
                          text=True, timeout=120)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["salad"]
    return [rule for rule in groups[0]["rules"] if "alert" in rule]


def test_promtool_check_rules_passes():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_promtool_unit_tests_pass():
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_salad_group_has_every_alert_with_severity_and_annotations():
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_each_alert_has_a_test_that_fires_it_and_one_that_does_not():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing, silent = set(), set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing >= ALERTS, f"no firing test for {ALERTS - firing}"
    assert silent >= ALERTS, f"no silent test for {ALERTS - silent}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_database_gauges_are_not_summed_across_replicas(rule):
    assert db_gauges_not_under_max(rule["expr"]) == []


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_rules_read_documented_metrics(rule):
    unknown = {base_name(n) for n in metric_names(rule["expr"])} - set(documented_metrics())
    assert not unknown, f"not in docs/metrics.md: {unknown}"
