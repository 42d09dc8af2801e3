"""`salad watch` (once, as JSON, and streaming) and `salad order --json`, as a user runs them."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import httpx
import pytest

from tests.helpers import wait_final, wait_until


def salad(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "salad", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "140", **env})


def test_order_json_then_watch_once_as_a_table_and_as_json_and_clear_errors(stack):
    auth = {"SALAD_CLIENT_TOKEN": stack.client_token, "SALAD_SHARED_URL": stack.shared_url}
    placed = salad("order", "apple", "kiwi", "--json", **auth)
    assert placed.returncode == 0, placed.stdout + placed.stderr
    first = json.loads(placed.stdout)
    assert first["fruits"] == ["apple", "kiwi"] and first["status"] == "pending"
    wait_final(stack, first["id"], timeout=20)
    # Ten fruits on four slots: the salad runs for seconds, long enough to be seen running on a busy machine.
    fruits = ["mango", "pear", "plum", "fig", "grape", "lime", "lemon", "date", "guava", "quince"]
    second = json.loads(salad("order", *fruits, "--json", **auth).stdout)
    wait_until(lambda: salad_running(stack, second["id"]), timeout=60, message="a fruit of the second salad running")

    with frozen(stack.worker_services):  # the second salad stays half done while we look
        table = salad("watch", "--once", **auth)
        as_json = salad("watch", "--once", "--json", **auth)

    assert table.returncode == 0, table.stdout + table.stderr
    for expected in ("open orders (1)", f"#{second['id']}", "in progress", "▶ ", "(worker-",
                     "live workers (2)", "1 salad completed", f"#{first['id']}"):
        assert expected in table.stdout, (expected, table.stdout)
    snapshot = json.loads(as_json.stdout)
    assert snapshot["completed"] == 1 and snapshot["recent"][0]["id"] == first["id"]
    assert snapshot["recent"][0]["preparation_time"] > 0
    assert [o["id"] for o in snapshot["open_orders"]] == [second["id"]]
    assert [f["fruit"] for f in snapshot["open_orders"][0]["fruits"]] == second["fruits"]
    assert sorted(w["name"] for w in snapshot["workers"]) == ["worker-1", "worker-2"]

    wrong = salad("watch", "--once", **{**auth, "SALAD_CLIENT_TOKEN": "not-the-token"})
    nowhere = salad("watch", "--once", "--shared-url", "http://127.0.0.1:9", SALAD_CLIENT_TOKEN="x")
    assert wrong.returncode == 1 and "401" in wrong.stderr and "SALAD_CLIENT_TOKEN" in wrong.stderr
    assert nowhere.returncode == 4 and "cannot reach" in nowhere.stderr


@contextmanager
def frozen(services):
    """SIGSTOP the processes (their leases and heartbeats wait), SIGCONT them afterwards."""
    for service in services:
        service.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for service in services:
            service.signal(signal.SIGCONT)


def salad_running(stack, order_id: int) -> bool:
    snapshot = httpx.get(f"{stack.shared_url}/v1/dashboard", headers=stack.client_headers).json()
    return any(o["id"] == order_id and o["counts"]["running"] for o in snapshot["open_orders"])


@pytest.mark.timeout(90)  # a hung stream fails here rather than at the suite's 300 s
def test_watch_json_streams_a_snapshot_per_change(stack):
    env = {**os.environ, "SALAD_CLIENT_TOKEN": stack.client_token}
    command = [sys.executable, "-m", "salad", "watch", "--json", "--shared-url", stack.shared_url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as watching:
        try:
            assert json.loads(watching.stdout.readline())["open_orders"] == []
            placed = json.loads(salad("order", "banana", "--json", "--shared-url", stack.shared_url,
                                      SALAD_CLIENT_TOKEN=stack.client_token).stdout)
            while (snapshot := json.loads(watching.stdout.readline()))["completed"] == 0:
                pass
        finally:
            watching.terminate()
    assert snapshot["recent"][0]["id"] == placed["id"]
