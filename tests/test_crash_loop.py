"""A Master replica in a crash loop holds no dead worker's tasks: while the other replica runs, the tasks of a
worker SIGKILLed are requeued within two lease periods (issue 21)."""

import signal
import threading
import time

import psycopg

from tests.helpers import order, wait_until

LEASE = 6.0  # seconds; longer than a Master replica takes to start, so each restart comes within a lease
CRASH_LOOP = {"SALAD_LEASE_SECONDS": str(LEASE), "SALAD_REAPER_INTERVAL": "0.2",
              "SALAD_HEARTBEAT_INTERVAL": "0.5", "SALAD_INTAKE_INTERVAL": "0.1",
              "SALAD_OUTBOX_INTERVAL": "0.1"}


def running_on(database_url: str, worker: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM tasks WHERE status = 'running' AND worker = %s",
                            (worker,)).fetchone()[0]


def crash_loop(stack, master, stop: threading.Event, restarts: list[float]) -> None:
    """SIGKILL the replica, start it again on its port, let it run a few reaper passes; until `stop`."""
    while not stop.is_set():
        master.signal(signal.SIGKILL)
        master.process.wait(10)
        master = stack.respawn(master)
        stack.wait_ready([master])
        restarts.append(time.monotonic())
        stop.wait(0.5)


def test_a_dead_workers_tasks_are_requeued_within_two_leases_while_a_master_crash_loops(make_stack,
                                                                                        postgres_url):
    stack = make_stack(postgres_url, workers=1, slots=4, time_scale=20, env=CRASH_LOOP)  # fruits take minutes
    crashing = stack.add_master()
    order(stack, ["apple", "banana", "kiwi", "mango"])
    wait_until(lambda: running_on(postgres_url, "worker-1") == 4, 30, message="worker-1 preparing 4 fruits")
    stop, restarts = threading.Event(), []
    looping = threading.Thread(target=crash_loop, args=(stack, crashing, stop, restarts))
    looping.start()
    try:
        wait_until(lambda: restarts, 60, message="the replica restarted once")
        worker = stack.find("worker-1")
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)
        killed = time.monotonic()
        while running_on(postgres_url, "worker-1") and time.monotonic() - killed < 3 * LEASE:
            time.sleep(0.1)
        requeued_after = time.monotonic() - killed
    finally:
        stop.set()
        looping.join(60)

    with psycopg.connect(postgres_url) as conn:
        states = conn.execute("SELECT status, attempts FROM tasks").fetchall()
        errors = conn.execute("SELECT error FROM task_failures").fetchall()
    restarts_meanwhile = sum(killed < at < killed + requeued_after for at in restarts)
    print(f"\ncrash loop: requeued {requeued_after:.1f} s after the worker died, the replica restarted "
          f"{restarts_meanwhile} time(s) meanwhile ({len(restarts)} in all)")
    assert restarts_meanwhile >= 1, "the replica restarted while the leases ran out"
    assert requeued_after < 2 * LEASE, f"requeued {requeued_after:.1f} s after the worker died"
    assert states == [("queued", 1)] * 4
    assert errors == [("lease expired on worker worker-1",)] * 4
