"""PostgreSQL goes away while salads are being prepared: 503 with Retry-After meanwhile, nothing lost after."""

import json
import os
import subprocess
import sys
import time

import httpx
import psycopg

from tests.helpers import get_order, order, prepared_tasks, wait_final, wait_until

OUTAGE = {"SALAD_LEASE_SECONDS": "3", "SALAD_REAPER_INTERVAL": "0.2", "SALAD_HEARTBEAT_INTERVAL": "0.5",
          "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}


def test_services_answer_503_while_postgres_is_down_and_recover_without_losing_work(
        make_stack, postgres_url, restartable_postgres):
    stack = make_stack(postgres_url, workers=2, slots=2, time_scale=0.5, env=OUTAGE)
    placed = order(stack, ["apple", "banana", "kiwi", "mango", "pear", "plum"])
    wait_until(lambda: get_order(stack, placed["id"])["counts"]["running"] >= 2, 20, message="tasks running")

    restartable_postgres.stop()
    try:
        down_order = httpx.get(f"{stack.shared_url}/v1/orders/{placed['id']}", headers=stack.client_headers)
        down_create = httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["fig"]},
                                 headers=stack.client_headers)
        down_stats = httpx.get(f"{stack.master_url}/v1/stats")
        probes = {(s.name, path): httpx.get(f"{s.url}{path}").status_code
                  for s in stack.services[:2] for path in ("/healthz", "/readyz")}
        time.sleep(4)  # longer than a lease: workers cannot heartbeat meanwhile
    finally:
        restartable_postgres.start_server()

    for response in (down_order, down_create, down_stats):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert "database is unavailable" in response.json()["message"]
    assert probes == {("shared", "/healthz"): 200, ("shared", "/readyz"): 503,
                      ("master", "/healthz"): 200, ("master", "/readyz"): 503}

    final = wait_final(stack, placed["id"], timeout=90)
    assert final["status"] == "completed"
    assert all(t["attempts"] == 1 for t in final["tasks"]), "workers kept their tasks through the outage"
    assert set(prepared_tasks(stack).values()) == {1}
    for service in stack.services[:2]:
        assert httpx.get(f"{service.url}/readyz").status_code == 200
    again = order(stack, ["fig"])
    assert wait_final(stack, again["id"], timeout=30)["status"] == "completed"


def test_the_cli_orders_and_follows_through_a_database_restart(make_stack, postgres_url,
                                                                restartable_postgres):
    stack = make_stack(postgres_url, workers=1, slots=2, time_scale=0.01, env=OUTAGE)
    restartable_postgres.stop()
    try:
        ordering = subprocess.Popen(
            [sys.executable, "-m", "salad", "order", "guava", "lychee", "--wait", "--json",
             "--shared-url", stack.shared_url], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "SALAD_CLIENT_TOKEN": stack.client_token})
        time.sleep(3)  # Shared answers 503 meanwhile: the CLI waits its Retry-After and asks again
    finally:
        restartable_postgres.start_server()
    out, err = ordering.communicate(timeout=60)

    assert ordering.returncode == 0, err
    assert "answered 503: trying again in 2 s" in err
    final = json.loads(out)
    assert final["status"] == "completed" and final["fruits"] == ["guava", "lychee"]
    with psycopg.connect(stack.database_url) as conn:
        guavas = conn.execute("SELECT count(*) FROM orders WHERE fruits::text LIKE '%guava%'").fetchone()[0]
    assert guavas == 1, "the retried order was created once"
