"""salad's scenarios: throughput, dispatch latency, scaling, makespan, history.

Every scenario starts its own stack (Shared, Master, workers as processes: salad.cli.stack.LocalStack) on a
fresh database, orders over Shared's public API as a client would, and reads the timings from the database.
"""

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
import psycopg
from salad.core.db import libpq_url

from bench.infra import CpuMeter, Infra, peak_rss_mib, salad_stack, service_pids
from bench.schedule import lower_bound, optimum

FRUITS = ("apple", "banana", "cherry", "kiwi", "mango", "orange", "pear", "plum")
POST_THREADS = 4  # concurrent clients posting orders
POLL = 0.01  # seconds between reads of the orders' states
SCALING_TASK_SECONDS = 0.05  # execution_time 1 s x SALAD_TIME_SCALE 0.05
MAKESPAN_SCALE = 0.01  # the seed's 4-20 s fruits, scaled
MAKESPAN_WORKERS = 3


@dataclass
class Options:
    tasks: int = 20_000
    fruits_per_order: int = 100
    workers: int = 2
    slots: int = 64  # a no-op worker is I/O-bound: many slots, so one exchange carries many results
    dispatch_orders: int = 100
    dispatch_spacing: float = 0.2  # seconds between one-fruit orders
    scaling_workers: tuple[int, ...] = (1, 2, 4, 8, 16)
    scaling_tasks_per_worker: int = 100  # 5 s of ideal work at every worker count
    scaling_prefetch: int = 6  # SALAD_PREFETCH of the scaling run's workers: tasks leased ahead, results batched
    salads: int = 20
    makespan_prefetch: int = 1  # SALAD_PREFETCH of the makespan run's workers: the next fruit waits on the worker
    random_seed: int = 2024  # execution times of the makespan salads (salad and the seed baseline draw alike)
    history_tasks: int = 1_000_000
    salad_env: dict[str, str] = field(default_factory=dict)  # extra SALAD_* for every salad process
    history_env: dict[str, str] = field(default_factory=dict)  # extra SALAD_* for the history run (retention)
    settle: float = 1.0  # seconds for fresh workers to reach their first long-poll before a measurement
    profile: bool = False
    fleet_workers: int = 1_000  # simulated single-slot workers of the fleet run (bench/fleet.py)
    fleet_processes: int = 4  # processes simulating them
    fleet_masters: int = 2  # Master replicas
    fleet_idle_seconds: float = 60.0
    fleet_dispatch_orders: int = 100
    fleet_tasks: int = 20_000
    fleet_churn_seconds: float = 60.0  # salads this long as a reference, then as long again with churn
    fleet_churn_per_minute: int = 100  # workers leaving (and as many joining) per minute


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def order_sizes(tasks: int, per_order: int) -> list[int]:
    return [min(per_order, tasks - first) for first in range(0, tasks, per_order)]


def client_headers(stack) -> dict[str, str]:
    """The public API's bearer token, on versions of salad that have one."""
    return dict(getattr(stack, "client_headers", {}))


def post_orders(shared_url: str, sizes: list[int], headers: dict[str, str]) -> float:
    """POST the orders from POST_THREADS clients; returns the wall time of the first post."""

    def post(indexed: tuple[int, int]) -> None:
        i, size = indexed
        fruits = [FRUITS[(i + k) % len(FRUITS)] for k in range(size)]
        response = clients[i % POST_THREADS].post(f"{shared_url}/v1/orders", json={"fruits": fruits})
        if response.status_code != 201:
            raise RuntimeError(f"order refused: {response.status_code} {response.text[:200]}")

    clients = [httpx.Client(timeout=60, headers=headers) for _ in range(POST_THREADS)]
    try:
        started = time.time()
        with ThreadPoolExecutor(POST_THREADS) as pool:
            list(pool.map(post, enumerate(sizes)))
        return started
    finally:
        for client in clients:
            client.close()


def max_order_id(conn) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()[0]


def wait_orders_final(conn, since_id: int, count: int, timeout: float) -> float:
    """Poll until the `count` orders after `since_id` are final at Shared; returns the wall time then."""
    deadline = time.monotonic() + timeout
    while True:
        done, failed = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed') "
            "FROM orders WHERE id > %s",
            (since_id,),
        ).fetchone()
        if failed:
            raise RuntimeError(f"{failed} order(s) failed")
        if done >= count:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {count} orders completed after {timeout:.0f}s")
        time.sleep(POLL)


def no_op_env(options: Options) -> dict[str, str]:
    return {
        "SALAD_EXECUTION_TIME_MIN": "0",
        "SALAD_EXECUTION_TIME_MAX": "0",
        "SALAD_MAX_FRUITS": str(options.fruits_per_order),
        **options.salad_env,
    }


class WaitSampler:
    """What PostgreSQL's active backends wait on, sampled every INTERVAL during a run (pg_stat_activity)."""

    INTERVAL = 0.1  # seconds

    def __init__(self, database_url: str) -> None:
        self.url = libpq_url(database_url)
        self.counts: Counter = Counter()
        self.samples = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopping.wait(self.INTERVAL):
                rows = conn.execute(
                    "SELECT /* bench */ coalesce(wait_event_type || ':' || wait_event, 'on CPU'), count(*)"
                    " FROM pg_stat_activity"
                    " WHERE state = 'active' AND pid <> pg_backend_pid() AND datname = current_database()"
                    " AND query NOT LIKE 'LISTEN%%' GROUP BY 1"
                ).fetchall()
                self.samples += 1
                self.counts.update(dict(rows))

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        self.thread.join()

    def mean_backends(self) -> dict[str, float]:
        """Mean number of backends in each state over the run."""
        return {k: round(n / max(1, self.samples), 2) for k, n in self.counts.most_common()}


def requests_by_route(stack) -> Counter:
    """HTTP requests each salad service has answered, by service, method and route (from its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: Counter = Counter()
    for service in stack.services:
        if service.name.startswith("worker"):
            continue
        try:
            text = httpx.get(f"{service.url}/metrics", timeout=10).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "salad_http_requests_total":
                    labels = sample.labels
                    counts[f"{labels['service']} {labels['method']} {labels['route']}"] += sample.value
    return counts


# --- 1 and 5: throughput (empty or with history) --------------------------------------------------
def throughput(
    infra: Infra,
    options: Options,
    log_dir: Path,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    profiler=None,
) -> dict:
    """`options.tasks` no-op tasks in orders of `fruits_per_order`, first order posted -> last completed."""
    env = {**no_op_env(options), **(extra_env or {})}
    sizes = order_sizes(options.tasks, options.fruits_per_order)
    with (
        salad_stack(database_url, options.workers, options.slots, 0.0, env, log_dir) as stack,
        psycopg.connect(libpq_url(database_url), autocommit=True) as conn,
    ):
        pids = service_pids(stack)
        workers = [s.process.pid for s in stack.worker_services]
        meter = CpuMeter(
            {
                "shared": lambda: [pids["shared"]],
                "master": lambda: [pids["master"]],
                "workers": lambda: workers,
                "postgres": infra.postgres_pids,
            }
        )
        since = max_order_id(conn)
        time.sleep(options.settle)
        requests_before = requests_by_route(stack)
        meter.start()
        if profiler:
            profiler.start(pids)
        with WaitSampler(database_url) as waits:
            started = post_orders(stack.shared_url, sizes, client_headers(stack))
            finished = wait_orders_final(conn, since, len(sizes), timeout=max(600.0, options.tasks / 5))
        if profiler:
            profiler.stop()
        cpu = meter.stop()
        requests = requests_by_route(stack) - requests_before
        rss = {name: peak_rss_mib(pid) for name, pid in pids.items()}
        p50, p95, p99, span = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY e),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY e), max(f) - min(c) FROM ("
            "  SELECT extract(epoch FROM t.finished_at - t.created_at) AS e,"
            "         extract(epoch FROM t.finished_at) AS f,"
            "         extract(epoch FROM t.created_at) AS c"
            "  FROM tasks t WHERE t.order_id > %s) s",
            (since,),
        ).fetchone()
        stored = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    seconds = finished - started
    return {
        "tasks": options.tasks,
        "seconds": seconds,
        "tasks_per_s": options.tasks / seconds,
        "tasks_per_s_master_span": options.tasks / float(span),  # first task created -> last task finished
        "latency_p50_ms": float(p50) * 1000,
        "latency_p95_ms": float(p95) * 1000,
        "latency_p99_ms": float(p99) * 1000,
        "peak_rss_mib": rss,
        "cpu_ms_per_task": {name: seconds_used * 1000 / options.tasks for name, seconds_used in cpu.items()},
        "tasks_stored_after": stored,
        "postgres_backends_waiting": waits.mean_backends(),
        "requests_per_task": {route: round(n / options.tasks, 3) for route, n in requests.most_common()},
    }


# Finished history: every order completed, its salad and outbox row delivered, every task succeeded.
# {table: (FROM clause, {column: expression})}; %(...)s are parameters. Columns not named here that are
# NOT NULL without a default get a neutral value of their type (fill_required): schema changes don't break it.
ORDER_TIME = "%(t0)s + o * interval '10 ms'"
HISTORY_ROWS = {
    "orders": (
        "generate_series(1, %(orders)s) o",
        {
            "id": "o",
            "fruits": "%(fruits)s::json",
            "priority": "0",
            "status": "'completed'",
            "created_at": ORDER_TIME,
            "accepted_at": ORDER_TIME,
            "completed_at": ORDER_TIME + " + interval '1 s'",
            "preparation_time": "1.0",
        },
    ),
    "salads": (
        "generate_series(1, %(orders)s) o",
        {
            "order_id": "o",
            "total": "%(per_order)s",
            "remaining": "0",
            "status": "'completed'",
            "ordered_at": ORDER_TIME,
            "finished_at": ORDER_TIME + " + interval '1 s'",
            "preparation_time": "1.0",
            "seed_collected": "false",
        },
    ),
    "outbox": (
        "generate_series(1, %(orders)s) o",
        {
            "order_id": "o",
            "status": "'completed'",
            "finished_at": ORDER_TIME + " + interval '1 s'",
            "preparation_time": "1.0",
            "attempts": "0",
            "next_attempt_at": ORDER_TIME + " + interval '1 s'",
            "delivered_at": ORDER_TIME + " + interval '1 s'",
        },
    ),
    "tasks": (
        (
            "generate_series(1, %(orders)s) o, generate_series(0, %(per_order)s - 1) p "
            "WHERE (o - 1) * %(per_order)s + p < %(tasks)s"
        ),
        {
            "order_id": "o",
            "position": "p",
            "fruit": "'apple'",
            "execution_time": "0",
            "priority": "0",
            "status": "'succeeded'",
            "attempts": "1",
            "max_attempts": "3",
            "lease_id": "md5(o::text || '/' || p::text)::uuid::text",
            "worker": "'worker-1'",
            "created_at": ORDER_TIME,
            "queued_at": ORDER_TIME,
            "claimed_at": ORDER_TIME + " + interval '5 ms'",
            "finished_at": ORDER_TIME + " + interval '6 ms'",
            "result": "o::text || ' apple prepared in 0 seconds'",
        },
    ),
}
NEUTRAL = {
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "double precision": "0",
    "numeric": "0",
    "real": "0",
    "boolean": "false",
    "json": "'{}'::json",
    "jsonb": "'{}'::jsonb",
    "character varying": "''",
    "text": "''",
    "timestamp with time zone": ORDER_TIME,
    "timestamp without time zone": ORDER_TIME,
    "uuid": "gen_random_uuid()",
}


def fill_required(conn, table: str, columns: dict[str, str]) -> dict[str, str]:
    """Add the NOT NULL columns without a default that `columns` does not name, with a neutral value."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s"
        " AND is_nullable = 'NO' AND column_default IS NULL",
        (table,),
    ).fetchall()
    return {**{name: NEUTRAL.get(kind, "DEFAULT") for name, kind in rows if name not in columns}, **columns}


def build_history_template(infra: Infra, tasks: int, per_order: int) -> str:
    """A migrated database holding `tasks` finished tasks (with orders, salads, outbox rows); vacuumed."""
    import datetime as dt
    import json

    url = infra.fresh_database("history_template")
    params = {
        "fruits": json.dumps(["apple"] * per_order),
        "orders": -(-tasks // per_order),
        "per_order": per_order,
        "tasks": tasks,
        "t0": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        with conn.transaction():
            for table, (source, columns) in HISTORY_ROWS.items():
                columns = fill_required(conn, table, columns)
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns.values())}"
                    f" FROM {source}",
                    params,
                )
            for table in ("orders", "tasks", "outbox"):
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
        conn.execute("VACUUM ANALYZE")
    return url.rsplit("/", 1)[1]


def history(infra: Infra, options: Options, log_dir: Path, template: str) -> dict:
    url = infra.fresh_database("salad_history", template=template)
    result = throughput(infra, options, log_dir, url, extra_env=options.history_env)
    result["history_tasks"] = options.history_tasks
    return result


# --- 2: dispatch latency --------------------------------------------------------------------------
def dispatch(infra: Infra, options: Options, log_dir: Path) -> dict:
    """One-fruit orders spaced out, workers idle in their long-poll: queued -> claimed, order -> claimed."""
    url = infra.fresh_database("salad_dispatch")
    with (
        salad_stack(url, options.workers, options.slots, 0.0, no_op_env(options), log_dir) as stack,
        psycopg.connect(libpq_url(url), autocommit=True) as conn,
        httpx.Client(timeout=30, headers=client_headers(stack)) as client,
    ):
        since = max_order_id(conn)
        time.sleep(options.settle)
        for i in range(options.dispatch_orders):
            response = client.post(
                f"{stack.shared_url}/v1/orders", json={"fruits": [FRUITS[i % len(FRUITS)]]}
            )
            response.raise_for_status()
            time.sleep(options.dispatch_spacing)
        wait_orders_final(conn, since, options.dispatch_orders, timeout=120)
        rows = conn.execute(
            "SELECT extract(epoch FROM t.claimed_at - t.queued_at),"
            " extract(epoch FROM t.claimed_at - o.created_at),"
            " extract(epoch FROM t.finished_at - t.queued_at)"
            " FROM tasks t JOIN orders o ON o.id = t.order_id WHERE o.id > %s",
            (since,),
        ).fetchall()
    queued, ordered, answered = ([float(r[k]) * 1000 for r in rows] for k in range(3))
    return {
        "tasks": len(rows),
        "queued_to_claimed_p50_ms": percentile(queued, 0.5),
        "queued_to_claimed_p99_ms": percentile(queued, 0.99),
        "order_to_claimed_p50_ms": percentile(ordered, 0.5),
        "order_to_claimed_p99_ms": percentile(ordered, 0.99),
        # a waiting worker's lease is written by the split itself (claimed = queued): the task's way to the
        # worker shows here, as the whole round trip of a no-op task until its result is recorded
        "queued_to_done_p50_ms": percentile(answered, 0.5),
        "queued_to_done_p99_ms": percentile(answered, 0.99),
    }


# --- 3: scaling -----------------------------------------------------------------------------------
def scaling(infra: Infra, options: Options, log_dir: Path) -> dict:
    """50 ms tasks with 1, 2, 4... single-slot workers (added to one stack as the count grows)."""
    url = infra.fresh_database("salad_scaling")
    env = {
        **options.salad_env,
        "SALAD_EXECUTION_TIME_MIN": "1",
        "SALAD_EXECUTION_TIME_MAX": "1",
        "SALAD_MAX_FRUITS": str(options.fruits_per_order),
        "SALAD_PREFETCH": str(options.scaling_prefetch),
    }
    counts = sorted(options.scaling_workers)
    by_workers = {}
    with (
        salad_stack(url, counts[0], 1, SCALING_TASK_SECONDS, env, log_dir) as stack,
        psycopg.connect(libpq_url(url), autocommit=True) as conn,
    ):
        for count in counts:
            added = [stack.add_worker(wait=False) for _ in range(count - len(stack.worker_services))]
            stack.wait_ready(added, timeout=60 + 10 * len(added))  # process starts crowd 2 cores
            time.sleep(options.settle)
            tasks = count * options.scaling_tasks_per_worker
            since = max_order_id(conn)
            sizes = order_sizes(tasks, options.fruits_per_order)
            post_orders(stack.shared_url, sizes, client_headers(stack))
            wait_orders_final(conn, since, len(sizes), timeout=max(120.0, tasks * SCALING_TASK_SECONDS * 5))
            span = float(
                conn.execute(
                    "SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM tasks"
                    " WHERE order_id > %s",
                    (since,),
                ).fetchone()[0]
            )
            ideal = tasks * SCALING_TASK_SECONDS / count
            by_workers[count] = {
                "tasks": tasks,
                "seconds": span,
                "tasks_per_s": tasks / span,
                "efficiency": ideal / span,
            }
    base = by_workers[counts[0]]["tasks_per_s"] / counts[0]
    for count, figures in by_workers.items():
        figures["speedup"] = figures["tasks_per_s"] / (base * counts[0])
    return {str(count): figures for count, figures in by_workers.items()}


# --- 4: makespan ----------------------------------------------------------------------------------
def makespan(infra: Infra, options: Options, log_dir: Path) -> dict:
    """Seed-style salads (10 fruits, 4-20 s x 0.01), one at a time, 3 single-slot workers.

    With prefetch a worker starts its next fruit the moment one ends, not a round trip to Master later (~10 ms
    here, a quarter of the shortest fruit); a fruit held ahead costs longest-first hand-out less than that
    (bench/RESULTS.md)."""
    url = infra.fresh_database("salad_makespan")
    env = {
        **options.salad_env,
        "SALAD_EXECUTION_TIME_MIN": "4",
        "SALAD_EXECUTION_TIME_MAX": "20",
        "SALAD_RANDOM_SEED": str(options.random_seed),
        "SALAD_PREFETCH": str(options.makespan_prefetch),
    }
    salads = []
    with (
        salad_stack(url, MAKESPAN_WORKERS, 1, MAKESPAN_SCALE, env, log_dir) as stack,
        psycopg.connect(libpq_url(url), autocommit=True) as conn,
        httpx.Client(timeout=30, headers=client_headers(stack)) as client,
    ):
        time.sleep(options.settle)
        for i in range(options.salads):
            since = max_order_id(conn)
            fruits = [FRUITS[(i + k) % len(FRUITS)] for k in range(10)]
            client.post(f"{stack.shared_url}/v1/orders", json={"fruits": fruits}).raise_for_status()
            wait_orders_final(conn, since, 1, timeout=60)
            times, order_to_done, claim_to_done = conn.execute(
                "SELECT array_agg(t.execution_time ORDER BY t.position),"
                " extract(epoch FROM max(t.finished_at) - min(o.created_at)),"
                " extract(epoch FROM max(t.finished_at) - min(t.claimed_at))"
                " FROM tasks t JOIN orders o ON o.id = t.order_id WHERE o.id > %s",
                (since,),
            ).fetchone()
            salads.append(salad_figures(times, float(order_to_done), float(claim_to_done)))
    return summarise_salads(salads)


def salad_figures(times: list[int], order_to_done: float, start_to_done: float) -> dict:
    bound = lower_bound(times, MAKESPAN_WORKERS) * MAKESPAN_SCALE
    return {
        "times": times,
        "order_to_done_s": order_to_done,
        "start_to_done_s": start_to_done,
        "lower_bound_s": bound,
        "optimum_s": optimum(times, MAKESPAN_WORKERS) * MAKESPAN_SCALE,
        "order_to_done_ratio": order_to_done / bound,
        "start_to_done_ratio": start_to_done / bound,
    }


def summarise_salads(salads: list[dict]) -> dict:
    """Means over the salads: the ratios to the lower bound, and the optimum's own ratio for reference."""
    return {
        "salads": len(salads),
        "order_to_done_ratio": statistics.fmean(s["order_to_done_ratio"] for s in salads),
        "start_to_done_ratio": statistics.fmean(s["start_to_done_ratio"] for s in salads),
        "optimum_ratio": statistics.fmean(s["optimum_s"] / s["lower_bound_s"] for s in salads),
        "order_to_done_s": statistics.fmean(s["order_to_done_s"] for s in salads),
        "lower_bound_s": statistics.fmean(s["lower_bound_s"] for s in salads),
        "per_salad": salads,
    }
