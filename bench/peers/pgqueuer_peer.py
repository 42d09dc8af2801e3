"""PgQueuer (asyncpg driver) on the benchmark's PostgreSQL: no-op jobs through W `worker` processes.

Run with bench/.venv's Python (the harness does):
    python pgqueuer_peer.py install DSN
    python pgqueuer_peer.py worker DSN BATCH       (one per worker process; SIGTERM stops it)
    python pgqueuer_peer.py produce DSN N CHUNK    (workers running: enqueue N jobs, CHUNK per statement)
    python pgqueuer_peer.py fill DSN N CHUNK       (no worker yet: enqueue N jobs)
    python pgqueuer_peer.py drain DSN N            (workers just started: first done -> last done)
A finished job leaves the queue table, so the run ends when the queue table is empty.
"""

import asyncio
import json
import signal
import sys
import time

import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager

WARM_UP_TIMEOUT = 60.0  # seconds
POLL = 0.005  # seconds between reads of the queue size


async def install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def worker(dsn: str, batch: int) -> None:
    conn = await asyncpg.connect(dsn)
    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    @manager.entrypoint("noop")
    async def noop(job) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.shutdown.set)
    await manager.run(batch_size=batch)


async def wait_empty(conn, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := await conn.fetchval("SELECT count(*) FROM pgqueuer")) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"pgqueuer: {left} jobs still queued after {timeout:.0f}s")
        await asyncio.sleep(POLL)


async def enqueue(queries: Queries, n: int, chunk: int) -> None:
    for first in range(0, n, chunk):
        k = min(chunk, n - first)
        await queries.enqueue(["noop"] * k, [None] * k, [0] * k)


async def produce(dsn: str, n: int, chunk: int) -> dict:
    conn = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue("noop", None)
    await wait_empty(conn, WARM_UP_TIMEOUT)
    watcher = await asyncpg.connect(dsn)
    start = time.time()
    await enqueue(queries, n, chunk)
    posted = time.time()
    await wait_empty(watcher, timeout=max(120.0, n / 50))
    return {"tasks": n, "seconds": time.time() - start, "enqueue_seconds": posted - start}


async def fill(dsn: str, n: int, chunk: int) -> dict:
    conn = await asyncpg.connect(dsn)
    start = time.time()
    await enqueue(Queries(AsyncpgDriver(conn)), n, chunk)
    return {"tasks": n, "enqueue_seconds": time.time() - start}


async def drain(dsn: str, n: int) -> dict:
    conn = await asyncpg.connect(dsn)
    deadline = time.monotonic() + WARM_UP_TIMEOUT
    while await conn.fetchval("SELECT count(*) FROM pgqueuer") >= n:
        if time.monotonic() > deadline:
            raise SystemExit("pgqueuer: no job done after the warm-up timeout")
        await asyncio.sleep(POLL)
    start = time.time()
    await wait_empty(conn, timeout=max(120.0, n / 50))
    return {"tasks": n - 1, "seconds": time.time() - start}


if __name__ == "__main__":
    command, dsn = sys.argv[1], sys.argv[2]
    if command == "install":
        asyncio.run(install(dsn))
    elif command == "worker":
        asyncio.run(worker(dsn, int(sys.argv[3])))
    elif command == "produce":
        print(json.dumps(asyncio.run(produce(dsn, int(sys.argv[3]), int(sys.argv[4])))))
    elif command == "fill":
        print(json.dumps(asyncio.run(fill(dsn, int(sys.argv[3]), int(sys.argv[4])))))
    elif command == "drain":
        print(json.dumps(asyncio.run(drain(dsn, int(sys.argv[3])))))
    else:
        raise SystemExit(f"unknown command {command}")
