"""Chaos: 100 orders while every kind of process is SIGKILLed — workers (replaced by new ones), Shared and
each Master (started again on their ports) — and PostgreSQL restarts. Every task succeeds once, every
completion reaches Shared once, and the seed's client collecting finished salads on GET /send_command gets
each one exactly once. Only the workers killed cost attempts: the faults of Shared, the Masters and
PostgreSQL cost none.

Faults are counted from what happened, not from the plan: a killed process's exit status, a restarted service
answering /readyz again, PostgreSQL's postmaster started anew.
"""

import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx
import psycopg
from salad.cli.stack import LocalStack, Service

from tests.helpers import prepared_tasks, wait_until

ORDERS = 100
FRUITS = ["apple", "banana", "kiwi", "mango", "pear"]
FAULT_PERIOD = 1.0  # seconds between faults, besides the time a restart takes
FAULT_PLAN = ["worker", "shared", "worker", "master", "worker", "master-2", "postgres", "worker", "master",
              "shared", "worker", "master-2", "worker"]
# Short leases and loops so that the test takes a minute or two. Each worker here talks to one Master (in a
# cluster, a Service sends it to a live one), so while that Master restarts it cannot heartbeat: the lease
# outlasts a restart, with room for a slow machine (a 5 s lease once expired on a worker that was not
# killed; the test prints its longest restart). Each worker killed costs the tasks it held an attempt, and
# one task can be on several of them in turn (task 122 of one run was on three, and failed at the default
# SALAD_MAX_ATTEMPTS of 3): the attempts outnumber the workers killed.
CHAOS = {"SALAD_LEASE_SECONDS": "12", "SALAD_REAPER_INTERVAL": "0.2", "SALAD_HEARTBEAT_INTERVAL": "0.5",
         "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1", "SALAD_INTAKE_LEASE_SECONDS": "3",
         "SALAD_MAX_ATTEMPTS": str(FAULT_PLAN.count("worker") + 1)}
KINDS = {"worker", "shared", "master", "master-2", "postgres"}
SIGKILLED = -signal.SIGKILL  # a child's returncode when SIGKILL ended it


def place_orders(shared_url: str, headers: dict, tickets: threading.Semaphore, placed: list[int],
                 stop: threading.Event) -> None:
    """A client ordering as the faults let it, an order a ticket; a 503 or a refused connection is retried
    with the same Idempotency-Key. It is given Shared's URL, not the stack: the stack's list of services
    changes while a service restarts."""
    for _ in range(ORDERS):
        while not tickets.acquire(timeout=0.5):
            if stop.is_set():
                return
        key = str(uuid.uuid4())
        while not stop.is_set():
            try:
                response = httpx.post(f"{shared_url}/v1/orders", json={"fruits": FRUITS}, timeout=10,
                                      headers={**headers, "Idempotency-Key": key})
                if response.status_code == 201:
                    placed.append(response.json()["id"])
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)


def collect_commands(master_urls: list[str], headers: dict, delivered: list[float], retries: Counter,
                     stop: threading.Event) -> None:
    """The seed's client waiting for finished salads on GET /send_command, from whichever Master answers.

    An answer that did not come (a Master killed, PostgreSQL restarting) is asked for again with the same
    Idempotency-Key, so that a salad handed out just before the failure is handed out again, not lost.
    `retries` counts the requests not answered, and the salads handed out again."""
    key = str(uuid.uuid4())
    while not stop.is_set():
        for url in master_urls:
            try:
                response = httpx.get(f"{url}/send_command", timeout=5,
                                     headers={**headers, "Idempotency-Key": key})
            except httpx.TransportError:
                retries["unanswered"] += 1
                continue
            if response.status_code == 200:
                delivered.append(response.json()["preparation_time"])
                retries["handed out again"] += response.headers.get("Idempotent-Replayed") == "true"
                key = str(uuid.uuid4())
                break
            if response.status_code == 202:
                time.sleep(0.05)
                break
            retries["unanswered"] += 1
        else:  # no Master answered: both restarting, or the database
            time.sleep(0.2)


def sigkill(service: Service) -> bool:
    """SIGKILL; True when the process's exit status says the signal ended it."""
    service.signal(signal.SIGKILL)
    return service.process.wait(10) == SIGKILLED


def answers_ready(service: Service) -> bool:
    return httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200


def postmaster_started(database_url: str) -> datetime:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]


def orders_by_status(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())


def finished_orders(database_url: str) -> int:
    by_status = orders_by_status(database_url)
    return by_status.get("completed", 0) + by_status.get("failed", 0)


def open_orders(database_url: str) -> int:
    """Orders placed and not finished: waiting for a Master, or being prepared."""
    by_status = orders_by_status(database_url)
    return by_status.get("pending", 0) + by_status.get("in_progress", 0)


class Chaos:
    """Injects the faults of the plan and counts those that happened, by kind."""

    def __init__(self, stack: LocalStack, master_urls: list[str], postgres, rng: random.Random) -> None:
        self.stack, self.master_urls, self.postgres, self.rng = stack, master_urls, postgres, rng
        self.seen: Counter = Counter()
        self.log: list[tuple[datetime, str, int]] = []  # when, what was hit, orders open: to explain
        self.longest_restart = 0.0  # seconds from a service's kill to its successor answering /readyz
        self.completed_before_shared = 0  # orders completed when the Shared running now started

    def inject(self, fault: str) -> None:
        """One fault of the plan, counted under its kind only when what happened shows it."""
        worker = self.rng.choice([w for w in self.stack.worker_services if w.process.poll() is None])
        self.log.append((datetime.now(UTC), worker.name if fault == "worker" else fault,
                         open_orders(self.stack.database_url)))
        if fault == "worker":
            self.seen[fault] += self.replace(worker)
        elif fault == "postgres":
            self.seen[fault] += self.restart_postgres()
        else:
            self.seen[fault] += self.kill_and_restart(self.stack.find(fault))

    def replace(self, worker: Service) -> bool:
        """A worker SIGKILLed; a new one, on either Master, takes its place (ready before the next fault)."""
        killed = sigkill(worker)
        self.stack.add_worker(SALAD_MASTER_URL=self.rng.choice(self.master_urls))
        return killed

    def kill_and_restart(self, victim: Service) -> bool:
        """Shared or a Master SIGKILLed, then started again on its port: True when it died of the signal and
        the new process answers /readyz."""
        started = time.monotonic()
        if not sigkill(victim):
            return False
        if victim.name == "shared":  # no Shared runs now: the next one applies every completion from here on
            self.completed_before_shared = orders_by_status(self.stack.database_url).get("completed", 0)
        ready = answers_ready(self.stack.restart_service(victim))
        self.longest_restart = max(self.longest_restart, time.monotonic() - started)
        return ready

    def restart_postgres(self) -> bool:
        """True when PostgreSQL's postmaster started anew."""
        before = postmaster_started(self.stack.database_url)
        self.postgres.restart()
        return postmaster_started(self.stack.database_url) > before


def failed_attempts(database_url: str) -> list[tuple]:
    """Every lost or failed attempt: which task, on which worker, why, when."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT task_id, attempt, worker, error, failed_at FROM task_failures"
                            " ORDER BY failed_at").fetchall()


def completed_preparation_times(database_url: str) -> Counter:
    """The preparation time of every completed salad, as many times as salads have it: what the seed's
    client must collect on GET /send_command, each salad once. Compared as counts, not mapped to orders:
    two salads' times, to the microsecond, coincided in one run."""
    with psycopg.connect(database_url) as conn:
        return Counter(seconds for (seconds,) in conn.execute(
            "SELECT preparation_time FROM salads WHERE status = 'completed'"))


def completions_counted_by_shared(stack: LocalStack) -> float:
    metrics = httpx.get(f"{stack.shared_url}/metrics").text
    return float(re.search(r'salad_orders_finished_total\{status="completed"\} (\S+)', metrics).group(1))


def run(chaos: Chaos, master_urls: list[str], retries: Counter) -> tuple[list[int], list[float]]:
    """A client orders and the seed's client collects finished salads while the faults of the plan strike,
    until every order is finished and every completed salad collected. The client gets its orders' tickets
    in batches, one before each fault, so that every fault strikes while orders are being prepared however
    long the restarts take. Returns the orders placed and the commands collected."""
    stack, database_url = chaos.stack, chaos.stack.database_url
    placed, delivered, tickets, stop = [], [], threading.Semaphore(0), threading.Event()
    client = threading.Thread(target=place_orders, args=(stack.shared_url, stack.client_headers, tickets,
                                                         placed, stop))
    collector = threading.Thread(target=collect_commands, args=(master_urls, stack.client_headers, delivered,
                                                                retries, stop))
    client.start()
    collector.start()
    batch = ORDERS // len(FAULT_PLAN)
    try:
        for fault in FAULT_PLAN:
            tickets.release(batch)
            time.sleep(FAULT_PERIOD)
            chaos.inject(fault)
        tickets.release(ORDERS - batch * len(FAULT_PLAN))
        client.join(120)
        assert len(placed) == ORDERS, f"the client placed {len(placed)} orders of {ORDERS}"
        wait_until(lambda: finished_orders(database_url) == ORDERS, 180, interval=0.5,
                   message=f"{ORDERS} orders finished")
        wait_until(lambda: len(delivered) >= orders_by_status(database_url).get("completed", 0), 30,
                   message="every completed salad collected on GET /send_command")
    finally:
        stop.set()
        client.join(10)
        collector.join(10)
    return placed, delivered


def test_chaos_loses_nothing_and_duplicates_nothing(make_stack, postgres_url, restartable_postgres):
    stack = make_stack(postgres_url, workers=4, slots=2, time_scale=0.05, env=CHAOS)
    master_urls = [stack.master_url, stack.add_master("master-2").url]
    stack.add_worker("worker-5", SALAD_MASTER_URL=master_urls[1])
    chaos = Chaos(stack, master_urls, restartable_postgres, random.Random(20261126))

    retries = Counter()
    placed, delivered = run(chaos, master_urls, retries)
    open_at_faults = [open_orders for _, _, open_orders in chaos.log]

    left_over = httpx.get(f"{stack.master_url}/send_command", headers=stack.client_headers)
    with psycopg.connect(postgres_url) as conn:
        tasks = conn.execute("SELECT id, status FROM tasks").fetchall()
        versions = conn.execute("SELECT master_version, count(*) FROM orders GROUP BY 1").fetchall()
        reports = conn.execute("SELECT order_id, count(*) FROM outbox GROUP BY 1"
                               " HAVING count(*) > 1").fetchall()
    lost = [task_id for task_id, status in tasks if status != "succeeded"]
    duplicated = sum(1 for n in prepared_tasks(stack).values() if n > 1)
    completed = completed_preparation_times(postgres_url)
    collected = (Counter(delivered) & completed).total()  # completed salads handed out, each counted once
    attempts = failed_attempts(postgres_url)

    print(f"\nchaos: faults seen {dict(chaos.seen)}; orders {len(placed)} placed, "
          f"{orders_by_status(postgres_url).get('completed', 0)} completed, at least {min(open_at_faults)} "
          f"open at each fault; lost = {len(lost)}, duplicated = {duplicated}, "
          f"completed salads collected = {collected} ({len(delivered)} commands, {dict(retries)}); "
          f"{len(attempts)} attempts lost; longest restart {chaos.longest_restart:.1f} s")
    if lost:
        explain(lost, attempts, chaos.log)
    assert all(chaos.seen[kind] >= 1 for kind in KINDS), f"every kind of fault happened: {chaos.seen}"
    assert min(open_at_faults) > 0, "every fault struck while orders were being prepared"
    assert len(placed) == ORDERS and len(set(placed)) == ORDERS
    assert len(tasks) == ORDERS * len(FRUITS)
    assert lost == [] and duplicated == 0
    killed = {what for _, what, _ in chaos.log if what.startswith("worker-")}
    spared = [attempt for attempt in attempts if attempt[2] not in killed]
    lease = CHAOS["SALAD_LEASE_SECONDS"]
    assert spared == [], (f"attempts are lost on the workers killed only (a lease is {lease} s, the longest"
                          f" restart took {chaos.longest_restart:.1f} s)")
    assert completed.total() == ORDERS
    assert Counter(delivered) == completed, "each salad handed out on GET /send_command exactly once"
    assert left_over.status_code == 202, "no command left over"
    assert versions == [(1, ORDERS)], "each order's completion applied once at Shared"
    assert reports == [], "one completion report per order"
    assert completions_counted_by_shared(stack) == ORDERS - chaos.completed_before_shared, \
        "the Shared running now counted each completion it applied once"


def explain(lost: list[int], attempts: list[tuple], faults: list[tuple]) -> None:
    """Which attempts the failed tasks lost, and the faults around them."""
    print("the lost tasks' attempts (UTC):")
    for task_id, attempt, worker, error, failed_at in attempts:
        if task_id in lost:
            print(f"  {failed_at.astimezone(UTC):%H:%M:%S.%f} task {task_id} attempt {attempt} on {worker}: "
                  f"{error}")
    print("faults (UTC):")
    for at, what, open_orders in faults:
        print(f"  {at:%H:%M:%S.%f} {what} ({open_orders} orders open)")
