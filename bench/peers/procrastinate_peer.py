"""Procrastinate (psycopg 3) on the benchmark's PostgreSQL: no-op jobs through W `worker` processes.

Run with bench/.venv's Python (the harness does), BENCH_DSN in the environment:
    python procrastinate_peer.py install
    python procrastinate_peer.py worker CONCURRENCY     (one per worker process; SIGTERM stops it)
    python procrastinate_peer.py produce N CHUNK        (workers running: defer N jobs, CHUNK per batch)
    python procrastinate_peer.py fill N CHUNK           (no worker yet: defer N jobs)
    python procrastinate_peer.py drain N                (workers just started: first done -> last done)
The run ends when no job is left in `todo` or `doing`.
"""

import asyncio
import json
import os
import sys
import time

import procrastinate
import psycopg

DSN = os.environ["BENCH_DSN"]
WARM_UP_TIMEOUT = 60.0  # seconds
POLL = 0.005  # seconds between reads of the job counts
PENDING = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name="noop")
async def noop() -> None:
    return None


async def install() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def worker(concurrency: int) -> None:
    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=True)


async def wait_done(conn, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := (await (await conn.execute(PENDING)).fetchone())[0]) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"procrastinate: {left} jobs pending after {timeout:.0f}s")
        await asyncio.sleep(POLL)


async def pending(conn) -> int:
    return (await (await conn.execute(PENDING)).fetchone())[0]


async def defer(n: int, chunk: int) -> None:
    for first in range(0, n, chunk):
        await noop.batch_defer_async(*[{}] * min(chunk, n - first))


async def produce(n: int, chunk: int) -> dict:
    async with app.open_async(), await psycopg.AsyncConnection.connect(DSN, autocommit=True) as watcher:
        await noop.defer_async()
        await wait_done(watcher, WARM_UP_TIMEOUT)
        start = time.time()
        await defer(n, chunk)
        posted = time.time()
        await wait_done(watcher, timeout=max(120.0, n / 50))
    return {"tasks": n, "seconds": time.time() - start, "enqueue_seconds": posted - start}


async def fill(n: int, chunk: int) -> dict:
    async with app.open_async():
        start = time.time()
        await defer(n, chunk)
    return {"tasks": n, "enqueue_seconds": time.time() - start}


async def drain(n: int) -> dict:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        deadline = time.monotonic() + WARM_UP_TIMEOUT
        while await pending(conn) >= n:
            if time.monotonic() > deadline:
                raise SystemExit("procrastinate: no job done after the warm-up timeout")
            await asyncio.sleep(POLL)
        start = time.time()
        await wait_done(conn, timeout=max(120.0, n / 50))
    return {"tasks": n - 1, "seconds": time.time() - start}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "install":
        asyncio.run(install())
    elif command == "worker":
        asyncio.run(worker(int(sys.argv[2])))
    elif command == "produce":
        print(json.dumps(asyncio.run(produce(int(sys.argv[2]), int(sys.argv[3])))))
    elif command == "fill":
        print(json.dumps(asyncio.run(fill(int(sys.argv[2]), int(sys.argv[3])))))
    elif command == "drain":
        print(json.dumps(asyncio.run(drain(int(sys.argv[2])))))
    else:
        raise SystemExit(f"unknown command {command}")
