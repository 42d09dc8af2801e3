"""The fleet scenario: a thousand simulated workers against Shared and two Master replicas on one PostgreSQL.

A simulated worker does on the wire what `salad worker` does with one slot and no prefetch: it heartbeats
`PUT /v1/workers/{name}` every 5 s, long-polls `POST /v1/tasks/exchange` (`wait` 10 s) for one task,
prepares it (sleeps; a fruit of 5 s or more heartbeats its lease every 5 s as the worker does), reports the
result with `wait` 0 (which leases its next task if one is queued) and long-polls again when none was. Each
exchange names itself with a request id; one that got no answer (or 502-504) is sent again marked as a retry.
Each worker has its own HTTP session, so its own connections, as each `salad worker` process does. Leaving
cleanly, it stops its long-poll, finishes and reports its fruit, then says goodbye (`DELETE`). Workers live in
a few asyncio processes (`python -m bench.fleet simulate ...`, driven over stdin), spread over the Masters as a
Kubernetes Service spreads connections.

Phases, on one stack and one database (its own PostgreSQL cluster, fsync on, with pg_stat_statements):
1. idle: every worker waiting, for `fleet_idle_seconds`: CPU of the Masters, Shared and PostgreSQL as a share
   of one core, HTTP requests/s, PostgreSQL transactions/s and statements/s, Master RSS, connections.
2. dispatch: one-fruit orders every 0.2 s with every worker waiting: queued -> claimed, queued -> result and
   order -> result p50/p99; statements and transactions per order above the idle rate.
3. throughput: `fleet_tasks` no-op tasks in orders of 100 fruits across the single-slot workers: tasks/s
   end to end (first order posted -> last completed), task latency created -> finished p50/p99.
4. churn: 10-fruit salads of 1-8 s fruits every 0.5 s; for `fleet_churn_seconds` as a reference, then as long
   again while `fleet_churn_per_minute` workers leave cleanly and as many join: every task run once (from
   the workers' own records), every order completed, queued -> claimed p99 of both halves.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import psycopg

from bench.infra import CLOCK_TICKS, PG_SETTINGS, children_of, cpu_seconds, peak_rss_mib, status_mib
from bench.profiler import Profiler
from bench.salad_runs import FRUITS, WaitSampler, order_sizes, percentile, post_orders
from salad.core.limits import raise_open_files_limit

BEAT_SECONDS = 5.0  # `salad worker`'s heartbeat_interval
CLAIM_WAIT = 10.0  # `salad worker`'s claim_wait
RAMP_SECONDS = 5.0  # the fleet starts over this long (a rollout), so beats and long-polls spread as in life
SAMPLE_SECONDS = 0.5  # connections are sampled this often during the idle phase
CHURN_SPACING = 0.5  # seconds between the churn phase's salads
CHURN_FRUITS = 10
CHURN_FRUIT_SECONDS = (1.0, 8.0)  # simulated preparation of the churn phase's fruits
DISPATCH_SPACING = 0.2
RETRIED = (0, 502, 503, 504)  # what the worker sends again (0: no answer), long-polls and reports alike
PROCESS_START_TIMEOUT = 120.0


# --- The simulated workers (run in their own processes) -------------------------------------------------
class Fleet:
    """The simulated workers of one process, their HTTP session and their records."""

    def __init__(self, masters: list[str], token: str, prefix: str) -> None:
        self.masters, self.token, self.prefix = masters, token, prefix
        self.workers: dict[str, "SimWorker"] = {}
        self.tasks: set[asyncio.Task] = set()
        self.born = 0
        self.fruit_seconds = (0.0, 0.0)
        self.executed: list[tuple[int, str, str]] = []  # (task id, lease id, worker) of every fruit started
        self.requests: Counter = Counter()
        self.errors: Counter = Counter()

    def session(self):
        """A worker's own HTTP session (keep-alive, as `salad worker`'s): its connections are its own, so
        the fleet costs Master what as many worker processes would, connections included."""
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CLAIM_WAIT + 20),
                                     headers={"Authorization": f"Bearer {self.token}"})

    async def call(self, http, method: str, url: str, body: dict | None, kind: str) -> tuple[int, bytes]:
        self.requests[kind] += 1
        async with http.request(method, url, json=body) as response:
            return response.status, await response.read()

    def join(self, count: int, ramp: float = 0.0) -> list["SimWorker"]:
        started = []
        for i in range(count):
            name = f"{self.prefix}-{self.born}"
            master = self.masters[self.born % len(self.masters)]
            self.born += 1
            worker = SimWorker(self, name, master)
            self.workers[name] = worker
            task = asyncio.create_task(worker.run(delay=ramp * i / max(1, count)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started.append(worker)
        return started

    def leave(self, count: int) -> int:
        """`count` workers (the oldest) stop cleanly."""
        leaving = [w for w in self.workers.values() if not w.stopping][:count]
        for worker in leaving:
            worker.stop()
        return len(leaving)

    async def quit(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def record(self) -> dict:
        return {
            "executed": self.executed,
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "born": self.born,
            "left": sum(w.left for w in self.workers.values()),
        }


class SimWorker:
    """One single-slot worker, as `salad worker` behaves on the wire (see the module's docstring)."""

    def __init__(self, fleet: Fleet, name: str, master: str) -> None:
        self.fleet, self.name, self.master = fleet, name, master
        self.stopping = False
        self.left = False
        self.busy = 0
        self.poll: asyncio.Task | None = None
        self.ready = asyncio.Event()  # first beat answered and first long-poll sent
        self.http = None

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            if self.poll is not None and not self.poll.done():
                self.poll.cancel()  # a long-poll cut short: Master leases it nothing (or its lease expires)

    async def run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        beats = None
        async with self.fleet.session() as self.http:  # closed however the worker ends
            try:
                await self.beat()
                beats = asyncio.create_task(self.beat_forever())
                await self.work()
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001 - recorded, the fleet goes on
                self.fleet.errors[f"worker: {type(exc).__name__}"] += 1
            finally:
                self.ready.set()
                if beats is not None:
                    beats.cancel()
                if self.stopping:
                    try:
                        url = f"{self.master}/v1/workers/{self.name}"
                        await self.fleet.call(self.http, "DELETE", url, None, "leave")
                        self.left = True
                    except Exception:  # noqa: BLE001
                        self.fleet.errors["leave"] += 1

    async def beat(self) -> None:
        body = {"slots": 1, "prefetch": 0, "busy": self.busy}
        url = f"{self.master}/v1/workers/{self.name}"
        status, _ = await self.fleet.call(self.http, "PUT", url, body, "beat")
        if status != 204:
            self.fleet.errors[f"beat {status}"] += 1

    async def beat_forever(self) -> None:
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                await self.beat()
            except Exception:  # noqa: BLE001
                self.fleet.errors["beat"] += 1

    async def exchange(self, results: list[dict], max_tasks: int, wait: float, kind: str) -> list[dict]:
        body = {"worker": self.name, "max_tasks": max_tasks, "wait": wait, "results": results,
                "request_id": str(uuid.uuid4())}
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"{self.master}/v1/tasks/exchange"
                status, content = await self.fleet.call(self.http, "POST", url, body, kind)
            except (aiohttp.ClientError, TimeoutError):
                status, content = 0, b""
            if status == 200:
                answer = json.loads(content)
                lost = sum(1 for ack in answer["results"]
                           if ack.get("lease_lost") or ack.get("status") is None)
                if lost:
                    self.fleet.errors["result lease lost"] += lost
                return answer["tasks"]
            self.fleet.errors[f"{kind} {status}"] += 1
            if status not in RETRIED or time.monotonic() > deadline:
                return []
            body["retry"] = True  # Master answers with what a lost answer leased
            await asyncio.sleep(0.2)

    async def work(self) -> None:
        results: list[dict] = []
        while True:
            if results:
                leased = await self.exchange(results, 0 if self.stopping else 1, 0, "report")
                results = []
            elif self.stopping:
                return
            else:
                self.poll = asyncio.create_task(self.exchange([], 1, CLAIM_WAIT, "long-poll"))
                self.ready.set()
                try:
                    leased = await self.poll
                except asyncio.CancelledError:
                    if self.stopping:
                        return
                    raise
            for task in leased:
                results.append(await self.prepare(task))

    async def prepare(self, task: dict) -> dict:
        self.fleet.executed.append((task["id"], task["lease_id"], self.name))
        low, high = self.fleet.fruit_seconds
        seconds = random.uniform(low, high) if high > 0 else 0.0
        self.busy = 1
        heartbeats = asyncio.create_task(self.heartbeat(task)) if seconds >= BEAT_SECONDS else None
        try:
            await asyncio.sleep(seconds)
        finally:
            self.busy = 0
            if heartbeats is not None:
                heartbeats.cancel()
        return {"id": task["id"], "lease_id": task["lease_id"], "outcome": "succeeded",
                "result": f"{task['fruit']} prepared"}

    async def heartbeat(self, task: dict) -> None:
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                status, _ = await self.fleet.call(self.http, "POST",
                                                  f"{self.master}/v1/tasks/{task['id']}/heartbeat",
                                                  {"lease_id": task["lease_id"]}, "task heartbeat")
                if status != 200:
                    self.fleet.errors[f"task heartbeat {status}"] += 1
            except Exception:  # noqa: BLE001
                self.fleet.errors["task heartbeat"] += 1


async def simulate(args: argparse.Namespace) -> None:
    """A process of the fleet: commands on stdin (`join N`, `leave N`, `fruit LOW HIGH`, `quit`), one line
    each; prints `ready` when its first workers all wait, `ok` after each other command; its records to `--out`."""
    fleet = Fleet(args.masters.split(","), os.environ["FLEET_TOKEN"], args.prefix)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = fleet.join(args.count, ramp=args.ramp)
    await asyncio.gather(*(w.ready.wait() for w in first))
    print("ready", flush=True)
    while line := (await reader.readline()).decode().split():
        command, values = line[0], line[1:]
        if command == "join":
            fleet.join(int(values[0]))
        elif command == "leave":
            fleet.leave(int(values[0]))
        elif command == "fruit":
            fleet.fruit_seconds = (float(values[0]), float(values[1]))
        elif command == "quit":
            break
        print("ok", flush=True)
    await fleet.quit()
    Path(args.out).write_text(json.dumps(fleet.record()))
    print("done", flush=True)


def simulator_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet simulate")
    parser.add_argument("--masters", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=RAMP_SECONDS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    raise_open_files_limit()  # two connections per simulated worker
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(simulate(args))


# --- The scenario (run by the suite) -------------------------------------------------------------------
class Simulators:
    """The fleet's processes, driven over their stdin."""

    def __init__(self, masters: list[str], token: str, workers: int, processes: int, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        counts = [workers // processes + (i < workers % processes) for i in range(processes)]
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "FLEET_TOKEN": token,
               "PYTHONPATH": os.pathsep.join([str(root / "services"), str(root),
                                              os.environ.get("PYTHONPATH", "")])}
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.fleet", "simulate", "--masters", ",".join(masters),
                 "--prefix", f"fleet{i}", "--count", str(count), "--out", str(log_dir / f"fleet{i}.json")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(log_dir / f"fleet{i}.log").open("wb"),
                text=True, env=env, cwd=root,
            )
            for i, count in enumerate(counts)
        ]
        self.next = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def expect(self, process: subprocess.Popen, word: str, timeout: float = PROCESS_START_TIMEOUT) -> None:
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            line = process.stdout.readline().strip()
        finally:
            timer.cancel()
        if line != word:
            raise RuntimeError(
                f"fleet process {process.pid} said {line!r}, not {word!r} (see {self.log_dir})")

    def wait_ready(self) -> None:
        for process in self.processes:
            self.expect(process, "ready")

    def tell_all(self, command: str) -> None:
        for process in self.processes:
            process.stdin.write(command + "\n")
            process.stdin.flush()
        for process in self.processes:
            self.expect(process, "ok", 30)

    def tell_one(self, command: str) -> None:
        """To the processes in turn."""
        process = self.processes[self.next % len(self.processes)]
        self.next += 1
        process.stdin.write(command + "\n")
        process.stdin.flush()
        self.expect(process, "ok", 30)

    def quit(self) -> list[dict]:
        for process in self.processes:
            if process.poll() is None:
                process.stdin.write("quit\n")
                process.stdin.flush()
        records = []
        for i, process in enumerate(self.processes):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            path = self.log_dir / f"fleet{i}.json"
            records.append(json.loads(path.read_text()) if path.exists() else {})
        return records

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


class Readings:
    """Counters read at the start and end of a phase: CPU, HTTP requests, transactions, statements."""

    def __init__(self, conn, stack, groups: dict) -> None:
        self.conn, self.stack, self.groups = conn, stack, groups

    def take(self) -> dict:
        xacts = self.conn.execute(
            "SELECT /* bench */ xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()[0]
        statements = self.conn.execute(
            "SELECT /* bench */ coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d"
            " ON d.oid = s.dbid WHERE d.datname = current_database() AND s.query NOT LIKE '%%/* bench */%%'"
        ).fetchone()[0]
        task_statements = self.conn.execute(
            "SELECT /* bench */ coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d"
            " ON d.oid = s.dbid WHERE d.datname = current_database() AND s.query ~ '\\mtasks\\M'"
            " AND s.query NOT LIKE '%%/* bench */%%'"
        ).fetchone()[0]
        by_query = dict(self.conn.execute(
            "SELECT /* bench */ left(regexp_replace(s.query, '\\s+', ' ', 'g'), 100), sum(calls)"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database() AND s.query NOT LIKE '%%/* bench */%%' GROUP BY 1"
        ).fetchall())
        return {
            "at": time.monotonic(),
            "by_query": {query: int(calls) for query, calls in by_query.items()},
            "cpu": {name: seconds() for name, seconds in self.groups.items()},
            "requests": http_requests(self.stack),
            "xacts": int(xacts),
            "statements": int(statements),
            "task_statements": int(task_statements),
        }

    @staticmethod
    def between(before: dict, after: dict) -> dict:
        seconds = after["at"] - before["at"]
        cpu = {name: (after["cpu"][name] - before["cpu"][name]) / seconds for name in after["cpu"]}
        return {
            "seconds": seconds,
            "cpu_cores": cpu,
            "requests": after["requests"] - before["requests"],
            "xacts": after["xacts"] - before["xacts"],
            "statements": after["statements"] - before["statements"],
            "task_statements": after["task_statements"] - before["task_statements"],
            "by_query": dict(Counter(after["by_query"]) - Counter(before["by_query"])),
        }


def http_requests(stack) -> float:
    """Requests Shared and the Masters have answered (their /metrics), /metrics reads left out."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for service in stack.services:
        text = httpx.get(f"{service.url}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "salad_http_requests_total" and sample.labels.get("route") != "/metrics":
                    total += sample.value
    return total


def connections(conn) -> tuple[int, int]:
    """Client connections to the database (the pools' and LISTEN connections), and how many run a
    statement."""
    total, active = conn.execute(
        "SELECT /* bench */ count(*), count(*) FILTER (WHERE state = 'active' AND query NOT LIKE 'LISTEN%%')"
        " FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid()"
    ).fetchone()
    return total, active


def rss_mib(pid: int) -> float | None:
    """VmRSS: the process's resident memory now (the long-polls open), not its peak."""
    return status_mib(pid, "VmRSS")


def postgres_cpu_seconds(cluster) -> float:
    """CPU time of PostgreSQL: the postmaster, its live children, and the children it has reaped (backends of
    connections closed meanwhile: a pool that overflows opens and closes them all the time)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own_and_reaped = sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime
    return own_and_reaped + sum(cpu_seconds(pid) for pid in children_of(postmaster))


def wait_for(condition, timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f}s")
        time.sleep(every)


def orders_final(conn, since: int) -> tuple[int, int, int]:
    return conn.execute(
        "SELECT /* bench */ count(*), count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status = 'failed')"
        " FROM orders WHERE id > %s", (since,)
    ).fetchone()


def wait_orders(conn, since: int, count: int, timeout: float) -> float:
    def done() -> bool:
        total, completed, failed = orders_final(conn, since)
        if failed:
            raise RuntimeError(f"{failed} order(s) failed")
        return completed >= count

    wait_for(done, timeout, f"{count} orders completed", every=0.01)
    return time.time()


def max_order_id(conn) -> int:
    return conn.execute("SELECT /* bench */ coalesce(max(id), 0) FROM orders").fetchone()[0]


def ms_percentiles(values: list[float], prefix: str) -> dict:
    return {f"{prefix}_p50_ms": percentile(values, 0.5), f"{prefix}_p99_ms": percentile(values, 0.99)}


def fleet(infra, options, log_dir: Path) -> dict:
    """The four phases (see the module's docstring) on one stack; returns every figure."""
    from salad.cli.stack import LocalStack
    from salad.core.migrate import upgrade

    from tests.postgres import PostgresCluster, create_database

    settings = {**PG_SETTINGS, "shared_preload_libraries": "pg_stat_statements"}
    cluster = PostgresCluster(settings=settings).start()
    simulators = None
    try:
        url = create_database(cluster.admin_url, "salad_fleet")
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        env = {
            "SALAD_EXECUTION_TIME_MIN": "0",
            "SALAD_EXECUTION_TIME_MAX": "0",
            "SALAD_MAX_FRUITS": str(options.fruits_per_order),
            **options.salad_env,
        }
        with (
            LocalStack(url, workers=0, env=env, log_dir=log_dir) as stack,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            for i in range(2, options.fleet_masters + 1):
                stack.add_master(f"master-{i}")
            masters = [s for s in stack.services if s.name.startswith("master")]
            pids = {s.name: s.process.pid for s in stack.services}
            simulators = Simulators([m.url for m in masters], stack.tokens["worker"], options.fleet_workers,
                                    options.fleet_processes, log_dir / "fleet")
            groups = {
                "masters": lambda: sum(cpu_seconds(m.process.pid) for m in masters),
                "shared": lambda: cpu_seconds(pids["shared"]),
                "postgres": lambda: postgres_cpu_seconds(cluster),
                "fleet": lambda: sum(cpu_seconds(pid) for pid in simulators.pids),
            }
            simulators.wait_ready()
            registered = "SELECT /* bench */ count(*) FROM workers"
            wait_for(lambda: conn.execute(registered).fetchone()[0] >= options.fleet_workers, 60,
                     "every worker registered")
            time.sleep(max(options.settle, CLAIM_WAIT if options.fleet_idle_seconds >= 30 else 1.0))
            readings = Readings(conn, stack, groups)
            result = {"workers": options.fleet_workers, "masters": len(masters)}
            profiled = tuple(m.name for m in masters) + ("shared",)

            def profile(phase: str, measure):
                if not options.profile:
                    return measure()
                profiler = Profiler(log_dir / "profile" / phase, names=profiled)
                profiler.start(pids)
                try:
                    return measure()
                finally:
                    profiler.stop()
                    profiler.summaries()  # the *.top.txt files

            result["idle"], idle_rates = profile("idle", lambda: idle_phase(conn, readings, masters, options))
            result["dispatch"] = dispatch_phase(conn, stack, readings, idle_rates, options)
            result["throughput"] = profile(
                "throughput", lambda: throughput_phase(conn, stack, readings, options))
            result["churn"] = churn_phase(conn, stack, simulators, options)
            records = simulators.quit()
            simulators = None
            result["churn"].update(churn_checks(conn, records, result["churn"].pop("since")))
            result["peak_rss_mib"] = {m.name: peak_rss_mib(m.process.pid) for m in masters}
        return result
    finally:
        if simulators is not None:
            simulators.kill()
        cluster.remove()


def idle_phase(conn, readings: Readings, masters, options) -> tuple[dict, dict]:
    before = readings.take()
    samples = []
    deadline = time.monotonic() + options.fleet_idle_seconds
    while time.monotonic() < deadline:
        samples.append(connections(conn))
        time.sleep(SAMPLE_SECONDS)
    after = readings.take()
    d = Readings.between(before, after)
    seconds = d["seconds"]
    services = d["cpu_cores"]["masters"] + d["cpu_cores"]["shared"] + d["cpu_cores"]["postgres"]
    rates = {"statements": d["statements"] / seconds, "xacts": d["xacts"] / seconds,
             "task_statements": d["task_statements"] / seconds}
    return {
        "seconds": seconds,
        "cpu_share_of_core": services,
        "cpu_cores": d["cpu_cores"],
        "http_requests_per_s": d["requests"] / seconds,
        "pg_transactions_per_s": rates["xacts"],
        "pg_statements_per_s": rates["statements"],
        "master_rss_mib": max(rss_mib(m.process.pid) or 0 for m in masters),
        "pg_statements_per_s_by_query": {q: round(n / seconds, 2) for q, n in
                                         Counter(d["by_query"]).most_common(15)},
        "pg_connections_max": max(total for total, _ in samples),
        "pg_connections_active_max": max(active for _, active in samples),
    }, rates


def dispatch_phase(conn, stack, readings: Readings, idle_rates: dict, options) -> dict:
    import httpx

    since = max_order_id(conn)
    before = readings.take()
    with httpx.Client(timeout=30, headers=stack.client_headers) as client:
        for i in range(options.fleet_dispatch_orders):
            fruits = [FRUITS[i % len(FRUITS)]]
            client.post(f"{stack.shared_url}/v1/orders", json={"fruits": fruits}).raise_for_status()
            time.sleep(DISPATCH_SPACING)
    wait_orders(conn, since, options.fleet_dispatch_orders, timeout=120)
    time.sleep(1.0)  # the completions' reports to Shared (outbox) are part of an order's cost
    d = Readings.between(before, readings.take())
    rows = conn.execute(
        "SELECT /* bench */ extract(epoch FROM t.claimed_at - t.queued_at),"
        " extract(epoch FROM t.finished_at - t.queued_at),"
        " extract(epoch FROM t.finished_at - o.created_at)"
        " FROM tasks t JOIN orders o ON o.id = t.order_id WHERE o.id > %s", (since,)
    ).fetchall()
    claimed, done, ordered = ([float(r[k]) * 1000 for r in rows] for k in range(3))
    slowest = conn.execute(
        "SELECT /* bench */ round(extract(epoch FROM t.claimed_at - t.queued_at) * 1000),"
        " round(extract(epoch FROM t.finished_at - t.queued_at) * 1000), t.worker, t.claimed_at::text"
        " FROM tasks t WHERE t.order_id > %s ORDER BY t.finished_at - t.queued_at DESC LIMIT 5", (since,)
    ).fetchall()
    tasks = len(rows)
    return {
        "tasks": tasks,
        **ms_percentiles(claimed, "queued_to_claimed"),
        **ms_percentiles(done, "queued_to_done"),
        **ms_percentiles(ordered, "order_to_done"),
        "statements_per_task": (d["statements"] - idle_rates["statements"] * d["seconds"]) / tasks,
        "transactions_per_task": (d["xacts"] - idle_rates["xacts"] * d["seconds"]) / tasks,
        "statements_per_task_in_phase": d["statements"] / tasks,  # the idle fleet's included
        # on the tasks table alone (split, claims, results): the task's own dispatch, not the order's intake,
        # completion and report to Shared
        "task_statements_per_task":
            (d["task_statements"] - idle_rates["task_statements"] * d["seconds"]) / tasks,
        "slowest": [dict(zip(("queued_to_claimed_ms", "queued_to_done_ms", "worker", "claimed_at"), row))
                    for row in slowest],
        "cpu_cores": d["cpu_cores"],
        "statements_by_query_per_task": {q: round(n / tasks, 2) for q, n in
                                         Counter(d["by_query"]).most_common(25)},
    }


def throughput_phase(conn, stack, readings: Readings, options) -> dict:
    since = max_order_id(conn)
    sizes = order_sizes(options.fleet_tasks, options.fruits_per_order)
    before = readings.take()
    with WaitSampler(stack.database_url) as waits:
        started = post_orders(stack.shared_url, sizes, stack.client_headers)
        finished = wait_orders(conn, since, len(sizes), timeout=max(300.0, options.fleet_tasks / 20))
    d = Readings.between(before, readings.take())
    p50, p99 = conn.execute(
        "SELECT /* bench */ percentile_cont(0.5) WITHIN GROUP (ORDER BY e),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY e)"
        " FROM (SELECT extract(epoch FROM finished_at - created_at) AS e FROM tasks WHERE order_id > %s) s",
        (since,),
    ).fetchone()
    return {
        "tasks": options.fleet_tasks,
        "seconds": finished - started,
        "tasks_per_s": options.fleet_tasks / (finished - started),
        "latency_p50_ms": float(p50) * 1000,
        "latency_p99_ms": float(p99) * 1000,
        "cpu_cores": d["cpu_cores"],
        "statements_per_task": d["statements"] / options.fleet_tasks,
        "http_requests_per_task": d["requests"] / options.fleet_tasks,
        "postgres_backends_waiting": waits.mean_backends(),
    }


def churn_phase(conn, stack, simulators: Simulators, options) -> dict:
    """Salads for a reference period, then as long again with workers leaving and joining."""
    import httpx

    simulators.tell_all(f"fruit {CHURN_FRUIT_SECONDS[0]} {CHURN_FRUIT_SECONDS[1]}")
    since = max_order_id(conn)
    half = options.fleet_churn_seconds
    spacing = 60.0 / options.fleet_churn_per_minute if options.fleet_churn_per_minute else None
    began = time.monotonic()
    churn_at = began + half
    next_churn = churn_at
    events = 0
    marks = {}
    with httpx.Client(timeout=30, headers=stack.client_headers) as client:
        i = 0
        while (now := time.monotonic()) < began + 2 * half:
            if spacing and now >= next_churn:
                simulators.tell_one("leave 1")
                simulators.tell_one("join 1")
                events += 1
                next_churn += spacing
                continue
            if "churn" not in marks and now >= churn_at:
                marks["churn"] = max_order_id(conn)
            fruits = [FRUITS[(i + k) % len(FRUITS)] for k in range(CHURN_FRUITS)]
            client.post(f"{stack.shared_url}/v1/orders", json={"fruits": fruits}).raise_for_status()
            i += 1
            time.sleep(CHURN_SPACING)
    orders = i
    wait_orders(conn, since, orders, timeout=120)
    simulators.tell_all("fruit 0 0")
    churn_since = marks.get("churn", since)

    def claimed_ms(low: int, high: int) -> list[float]:
        rows = conn.execute(
            "SELECT /* bench */ extract(epoch FROM claimed_at - queued_at) FROM tasks"
            " WHERE order_id > %s AND order_id <= %s",
            (low, high),
        ).fetchall()
        return [float(r[0]) * 1000 for r in rows]

    last = max_order_id(conn)
    steady, churning = claimed_ms(since, churn_since), claimed_ms(churn_since, last)
    return {
        "orders": orders,
        "since": since,
        "workers_left": events,
        "workers_joined": events,
        "steady_queued_to_claimed_p99_ms": percentile(steady, 0.99),
        "churn_queued_to_claimed_p99_ms": percentile(churning, 0.99),
        "churn_queued_to_claimed_p50_ms": percentile(churning, 0.5),
    }


def churn_checks(conn, records: list[dict], since: int) -> dict:
    """No task lost, none run twice: from the database and the workers' own records."""
    runs = Counter(task_id for record in records for task_id, _lease, _worker in record.get("executed", []))
    ids = [row[0] for row in conn.execute("SELECT id FROM tasks WHERE order_id > %s", (since,)).fetchall()]
    not_done = conn.execute(
        "SELECT count(*) FROM tasks WHERE order_id > %s AND status <> 'succeeded'", (since,)
    ).fetchone()[0]
    orders_not_completed = conn.execute(
        "SELECT count(*) FROM orders WHERE id > %s AND status <> 'completed'", (since,)
    ).fetchone()[0]
    requeued = conn.execute(
        "SELECT count(*) FROM task_failures WHERE order_id > %s", (since,)
    ).fetchone()[0]
    errors: Counter = Counter()
    for record in records:
        errors.update(record.get("errors", {}))
    return {
        "tasks": len(ids),
        "tasks_lost": not_done + orders_not_completed,
        "tasks_run_twice": sum(1 for task_id in ids if runs[task_id] > 1),
        "tasks_never_run": sum(1 for task_id in ids if runs[task_id] == 0),
        "leases_expired": requeued,
        "worker_errors": dict(errors),
        "workers_born": sum(record.get("born", 0) for record in records),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["simulate"]:
        simulator_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m bench.fleet simulate ...  (the scenario: python -m bench --scenarios fleet)")
