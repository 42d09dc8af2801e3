"""Where one task's round trip goes: a worker's exchange (a result in, the next task out) timed over HTTP
and, without HTTP, the same transaction called in-process; 50 ms apart, as a busy single-slot worker sends
them. Also the CPU time Master's process spends per exchange, and per `/healthz` for scale, and the
client's own CPU per exchange through the workers' aiohttp (salad/core/http.py) and through httpx.

    .venv/bin/python -m bench.roundtrip      # prints medians and 90th percentiles, in ms
"""

import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from salad.contracts.work import Report
from salad.core import http
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import tasks

from bench.infra import Infra, cpu_seconds, salad_stack, service_pids

CALLS = 200
GAP = 0.05  # seconds between calls: a 50 ms task
NO_OP = {"SALAD_EXECUTION_TIME_MIN": "1", "SALAD_EXECUTION_TIME_MAX": "1", "SALAD_MAX_FRUITS": "100"}


def summary(label: str, millis: list[float]) -> None:
    ordered = sorted(millis)
    p90 = ordered[int(len(ordered) * 0.9)]
    print(f"{label}: median {statistics.median(ordered):.2f} ms, p90 {p90:.2f} ms")


async def over_http(master_url: str, token: str, master_pid: int,
                    client: str) -> tuple[list[float], float, float, float]:
    """Round trips in ms; Master's CPU ms per exchange and per /healthz; the client's CPU ms per exchange."""
    headers = {"Authorization": f"Bearer {token}"}
    async with http.session(30.0, headers) as aio, httpx.AsyncClient(headers=headers) as httpx_client:

        async def post(path: str, body: dict | None = None) -> dict:
            if client == "aiohttp":
                answer = await http.send(aio, "POST" if body else "GET", master_url + path, body)
                return json.loads(answer.content)
            answer = await (httpx_client.post(master_url + path, json=body) if body
                            else httpx_client.get(master_url + path))
            return answer.json()

        task = (await post("/v1/tasks/exchange", {"worker": "w", "max_tasks": 1}))["tasks"][0]
        took = []
        cpu_before, client_cpu = cpu_seconds(master_pid), 0.0
        for _ in range(CALLS):
            await asyncio.sleep(GAP)
            result = {"id": task["id"], "lease_id": task["lease_id"], "outcome": "succeeded", "result": "ok"}
            started, client_started = time.perf_counter(), time.process_time()
            answer = await post("/v1/tasks/exchange", {"worker": "w", "max_tasks": 1, "results": [result]})
            took.append((time.perf_counter() - started) * 1000)
            client_cpu += time.process_time() - client_started
            task = answer["tasks"][0]
        exchange_cpu = (cpu_seconds(master_pid) - cpu_before) * 1000 / CALLS
        cpu_before = cpu_seconds(master_pid)
        for _ in range(CALLS):
            await asyncio.sleep(GAP)
            await post("/healthz")
        healthz_cpu = (cpu_seconds(master_pid) - cpu_before) * 1000 / CALLS
        return took, exchange_cpu, healthz_cpu, client_cpu * 1000 / CALLS


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
                for _ in range(2 * CALLS // 100 + 2):  # orders of 100 fruits (SALAD_MAX_FRUITS), for both clients
                    httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["apple"] * 100},
                               headers=stack.client_headers).raise_for_status()
                time.sleep(1.0)  # Master splits the order
                runs = {client: asyncio.run(over_http(stack.master_url, stack.tokens["worker"],
                                                       service_pids(stack)["master"], client))
                        for client in ("aiohttp", "httpx")}
            direct = in_process(infra.fresh_database("roundtrip_direct"))
        finally:
            infra.stop()
    for client, (took, exchange_cpu, healthz_cpu, client_cpu) in runs.items():
        summary(f"exchange over HTTP through {client} (the worker's view)", took)
        print(f"  the client's CPU per exchange: {client_cpu:.2f} ms; Master's: {exchange_cpu:.2f} ms "
              f"(per /healthz: {healthz_cpu:.2f} ms)")
    summary("the same transaction in-process", direct)


if __name__ == "__main__":
    main()
