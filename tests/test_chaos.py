"""Chaos: 100 orders while workers are SIGKILLed at random, a Master replica is killed and restarted, and
PostgreSQL restarts. Every order completes, every task succeeds once, every completion reaches Shared once."""

import random
import re
import signal
import threading
import time
import uuid

import httpx
import psycopg

from tests.helpers import prepared_tasks, wait_until

ORDERS = 100
FRUITS = ["apple", "banana", "kiwi", "mango", "pear"]
CHAOS = {"SALAD_LEASE_SECONDS": "2", "SALAD_REAPER_INTERVAL": "0.2", "SALAD_HEARTBEAT_INTERVAL": "0.4",
         "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1", "SALAD_MAX_ATTEMPTS": "10"}
FAULT_PERIOD = 1.5  # seconds between faults
FAULT_PLAN = ["worker", "worker", "worker", "master", "worker", "worker", "postgres", "worker", "worker", "worker"]


def place_orders(stack, placed: list[int], stop: threading.Event) -> None:
    """A client ordering steadily; a 503 or a refused connection is retried with the same Idempotency-Key."""
    for n in range(ORDERS):
        key = str(uuid.uuid4())
        while not stop.is_set():
            try:
                response = httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": FRUITS}, timeout=10,
                                      headers={**stack.client_headers, "Idempotency-Key": key})
                if response.status_code == 201:
                    placed.append(response.json()["id"])
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        time.sleep(0.1)


def orders_by_status(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())


def test_chaos_loses_nothing_and_duplicates_nothing(make_stack, postgres_url, restartable_postgres):
    rng = random.Random(20261126)
    stack = make_stack(postgres_url, workers=4, slots=2, time_scale=0.02, env=CHAOS)
    second_master = stack.add_master()
    stack.add_worker("worker-5", SALAD_MASTER_URL=second_master.url)
    placed, stop = [], threading.Event()
    client = threading.Thread(target=place_orders, args=(stack, placed, stop))
    client.start()
    faults = {"worker SIGKILL": 0, "master restart": 0, "postgres restart": 0}
    try:
        for fault in FAULT_PLAN:
            time.sleep(FAULT_PERIOD)
            if fault == "master":  # a Master replica killed and started again on its port
                second_master.signal(signal.SIGKILL)
                second_master = stack.restart_service(second_master)
                faults["master restart"] += 1
            elif fault == "postgres":
                unfinished = ORDERS - orders_by_status(postgres_url).get("completed", 0)
                restartable_postgres.restart()
                faults["postgres restart"] += 1
            else:  # a random worker killed; a new one takes its place
                victim = rng.choice([w for w in stack.worker_services if w.process.poll() is None])
                victim.signal(signal.SIGKILL)
                victim.process.wait(5)
                stack.add_worker(wait=False, SALAD_MASTER_URL=rng.choice([stack.master_url, second_master.url]))
                faults["worker SIGKILL"] += 1
        client.join(120)
        wait_until(lambda: orders_by_status(postgres_url).get("completed") == ORDERS, 180, interval=0.5,
                   message=f"{ORDERS} orders completed")
    finally:
        stop.set()
        client.join(10)

    with psycopg.connect(postgres_url) as conn:
        tasks = conn.execute("SELECT id, status FROM tasks").fetchall()
        versions = conn.execute("SELECT master_version, count(*) FROM orders GROUP BY 1").fetchall()
        reports = conn.execute("SELECT order_id, count(*) FROM outbox GROUP BY 1 HAVING count(*) > 1").fetchall()
    prepared = prepared_tasks(stack)
    shared_metrics = httpx.get(f"{stack.shared_url}/metrics").text
    completions_seen = float(re.search(r'salad_orders_finished_total\{status="completed"\} (\S+)',
                                       shared_metrics).group(1))
    lost = sum(1 for _, status in tasks if status != "succeeded")
    duplicated = sum(1 for n in prepared.values() if n > 1)

    print(f"\nchaos: faults injected {sum(faults.values())} ({faults}); orders {len(placed)} placed, "
          f"{orders_by_status(postgres_url).get('completed')} completed; tasks {len(tasks)}; "
          f"lost = {lost}, duplicated = {duplicated}; {unfinished} orders unfinished at the PostgreSQL restart")
    assert len(placed) == ORDERS and len(set(placed)) == ORDERS
    assert len(tasks) == ORDERS * len(FRUITS)
    assert lost == 0 and duplicated == 0
    assert versions == [(1, ORDERS)], "each order's completion applied once at Shared"
    assert reports == [], "one completion report per order"
    assert completions_seen == ORDERS, "Shared counted each completion once"
    assert faults == {"worker SIGKILL": 8, "master restart": 1, "postgres restart": 1}
    assert unfinished > 0, "PostgreSQL restarted while orders were still being prepared"
