"""Celery with a Redis broker: no-op tasks through `celery worker --pool prefork -c W`.

Run with bench/.venv's Python (the harness does):
    (in bench/peers) BENCH_REDIS_URL=... python -m celery -A celery_peer worker --pool prefork -c 2 ...
    BENCH_REDIS_URL=redis://... python celery_peer.py produce N   (workers running: push N, wait for the last)
    BENCH_REDIS_URL=redis://... python celery_peer.py fill N      (no worker yet: queue N tasks)
    BENCH_REDIS_URL=redis://... python celery_peer.py drain N     (workers just started: first -> last done)
The task keeps no result (ignore_result, Celery's fastest setting); it increments a Redis counter instead,
which is how the producer sees the last task done.
"""

import json
import os
import sys
import time

import redis
from celery import Celery

BROKER = os.environ["BENCH_REDIS_URL"]
COUNTER = "bench:done"
WARM_UP_TIMEOUT = 60.0  # seconds for the workers to take their first task
POLL = 0.005  # seconds between reads of the counter

app = Celery("celery_peer", broker=BROKER)
app.conf.update(
    task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True
)
_redis = None


def counter() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(BROKER)
    return _redis


@app.task(name="noop")
def noop() -> None:
    counter().incr(COUNTER)


def wait_count(n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while int(counter().get(COUNTER) or 0) < n:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"celery: only {int(counter().get(COUNTER) or 0)} of {n} tasks done in {timeout:.0f}s"
            )
        time.sleep(POLL)


def publish(n: int) -> None:
    with app.producer_or_acquire() as producer:  # one producer for all: Celery's fastest way to send many
        for _ in range(n):
            noop.apply_async(producer=producer)


def produce(n: int) -> dict:
    counter().delete(COUNTER)
    noop.apply_async()
    wait_count(1, WARM_UP_TIMEOUT)  # the workers are up and consuming
    counter().delete(COUNTER)
    start = time.time()
    publish(n)
    posted = time.time()
    wait_count(n, timeout=max(120.0, n / 50))
    return {"tasks": n, "seconds": time.time() - start, "enqueue_seconds": posted - start}


def fill(n: int) -> dict:
    counter().delete(COUNTER)
    start = time.time()
    publish(n)
    return {"tasks": n, "enqueue_seconds": time.time() - start}


def drain(n: int) -> dict:
    wait_count(1, WARM_UP_TIMEOUT)
    start = time.time()
    wait_count(n, timeout=max(120.0, n / 50))
    return {"tasks": n - 1, "seconds": time.time() - start}


if __name__ == "__main__":
    commands = {"produce": produce, "fill": fill, "drain": drain}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        raise SystemExit("usage: celery_peer.py produce|fill|drain N")
    print(json.dumps(commands[sys.argv[1]](int(sys.argv[2]))))
