"""Where one task's round trip goes: a worker's exchange (a result in, the next task out) timed over HTTP
and, without HTTP, the same transaction called in-process; 50 ms apart, as a busy single-slot worker sends
them. Also the CPU time Master's process spends per exchange, and per `/healthz` for scale.

    .venv/bin/python -m bench.roundtrip      # prints medians and 90th percentiles, in ms
"""

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import tasks
from salad.master.schemas import Report

from bench.infra import Infra, cpu_seconds, salad_stack, service_pids

CALLS = 200
GAP = 0.05  # seconds between calls: a 50 ms task
NO_OP = {"SALAD_EXECUTION_TIME_MIN": "1", "SALAD_EXECUTION_TIME_MAX": "1", "SALAD_MAX_FRUITS": "100"}


def summary(label: str, millis: list[float]) -> None:
    ordered = sorted(millis)
    p90 = ordered[int(len(ordered) * 0.9)]
    print(f"{label}: median {statistics.median(ordered):.2f} ms, p90 {p90:.2f} ms")


async def over_http(master_url: str, token: str, master_pid: int) -> tuple[list[float], float, float]:
    """Round trips in ms; Master's CPU ms per exchange and per /healthz."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=master_url, headers=headers) as client:
        first = await client.post("/v1/tasks/exchange", json={"worker": "w", "max_tasks": 1})
        task = first.json()["tasks"][0]
        took = []
        cpu_before = cpu_seconds(master_pid)
        for _ in range(CALLS):
            await asyncio.sleep(GAP)
            result = {"id": task["id"], "lease_id": task["lease_id"], "outcome": "succeeded", "result": "ok"}
            started = time.perf_counter()
            answer = await client.post("/v1/tasks/exchange",
                                       json={"worker": "w", "max_tasks": 1, "results": [result]})
            took.append((time.perf_counter() - started) * 1000)
            task = answer.json()["tasks"][0]
        exchange_cpu = (cpu_seconds(master_pid) - cpu_before) * 1000 / CALLS
        cpu_before = cpu_seconds(master_pid)
        for _ in range(CALLS):
            await asyncio.sleep(GAP)
            await client.get("/healthz")
        return took, exchange_cpu, (cpu_seconds(master_pid) - cpu_before) * 1000 / CALLS


def in_process(database_url: str) -> list[float]:
    engine = make_engine(sqlalchemy_url(database_url))
    fruits = ["apple"] * CALLS * 2
    tasks.split_orders(engine, [tasks.NewOrder(10**6, fruits, [1] * len(fruits), 0, datetime.now(UTC))], 3)
    task = tasks.claim(engine, "w", 1, 30, 60)[0]
    took = []
    for _ in range(CALLS):
        time.sleep(GAP)
        report = Report(id=task.id, lease_id=task.lease_id, outcome="succeeded", result="ok")
        started = time.perf_counter()
        _, leased = tasks.exchange(engine, "w", [report], 1, 30, 60)
        took.append((time.perf_counter() - started) * 1000)
        task = leased[0]
    engine.dispose()
    return took


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        infra = Infra(Path(folder)).start()
        try:
            url = infra.fresh_database("roundtrip")
            with salad_stack(url, 0, 1, 0.0, NO_OP, Path(folder) / "logs") as stack:
                for _ in range(CALLS // 100 + 1):  # orders of 100 fruits (SALAD_MAX_FRUITS)
                    httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["apple"] * 100},
                               headers=stack.client_headers).raise_for_status()
                time.sleep(1.0)  # Master splits the order
                http, exchange_cpu, healthz_cpu = asyncio.run(
                    over_http(stack.master_url, stack.tokens["worker"], service_pids(stack)["master"]))
            direct = in_process(infra.fresh_database("roundtrip_direct"))
        finally:
            infra.stop()
    summary("exchange over HTTP (the worker's view)", http)
    summary("the same transaction in-process", direct)
    print(f"Master's CPU per exchange over HTTP: {exchange_cpu:.2f} ms (per /healthz: {healthz_cpu:.2f} ms)")


if __name__ == "__main__":
    main()
