"""The suite: every scenario once per repetition on one PostgreSQL cluster; each figure's median, min, max."""

import functools
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from bench import fleet, peer_runs, salad_runs, seed_baseline
from bench.infra import Infra
from bench.machine_check import STEAL_WARNING_PERCENT, StealMeter, python_workload_ms
from bench.profiler import Profiler
from bench.salad_runs import MAKESPAN_SCALE, MAKESPAN_WORKERS, Options

SCENARIOS = ("throughput", "peers", "history", "dispatch", "scaling", "makespan", "fleet")


def run_suite(
    options: Options,
    reps: int,
    scenarios: tuple[str, ...],
    peers: tuple[str, ...],
    out_dir: Path,
    console: Console,
    save: Callable[[dict], None] = lambda results: None,
) -> dict:
    """Run the repetitions; `save` gets the results so far after each one (a long run killed keeps them)."""
    started = time.time()
    infra = Infra(out_dir / "work").start()
    runs, profile = [], None

    def results() -> dict:
        return {
            "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": time.time() - started,
            "machine": machine(),
            "options": asdict(options) | {"reps": reps, "scenarios": list(scenarios), "peers": list(peers)},
            "repetitions_done": len(runs),
            "figures": figures(runs, scenarios, peers, options),
            "profile": profile,
            "runs": runs,
        }

    try:
        template = None
        if "history" in scenarios:
            console.log(f"history: storing {options.history_tasks:,} finished tasks")
            template = salad_runs.build_history_template(
                infra, options.history_tasks, options.fruits_per_order
            )
        for rep in range(1, reps + 1):
            console.log(f"repetition {rep}/{reps}")
            run, rep_profile = repetition(infra, options, rep, scenarios, peers, template, out_dir, console)
            runs.append(run)
            profile = profile or rep_profile
            save(results())
    finally:
        infra.stop()
    return results()


def repetition(
    infra: Infra,
    options: Options,
    rep: int,
    scenarios: tuple[str, ...],
    peers: tuple[str, ...],
    template: str | None,
    out_dir: Path,
    console: Console,
) -> tuple[dict, dict | None]:
    """Every chosen scenario once; a scenario that fails is recorded as such and the others still run."""
    logs = out_dir / "logs" / f"rep{rep}"
    profiler = Profiler(out_dir / "profile") if options.profile and rep == 1 else None
    steps: list[tuple[str, Callable[[], dict]]] = []
    if "throughput" in scenarios:
        database = infra.fresh_database("salad_throughput")
        steps.append(
            (
                "throughput",
                lambda: salad_runs.throughput(
                    infra, options, logs / "throughput", database, profiler=profiler
                ),
            )
        )
    if "peers" in scenarios:
        steps += [
            (
                peer,
                functools.partial(
                    peer_runs.measure,
                    peer,
                    infra,
                    options.tasks,
                    options.workers,
                    options.slots,
                    logs / "peers",
                ),
            )
            for peer in peers
        ]
    if "history" in scenarios:
        steps.append(("history", lambda: salad_runs.history(infra, options, logs / "history", template)))
    for name, call in (
        ("dispatch", salad_runs.dispatch),
        ("scaling", salad_runs.scaling),
        ("makespan", salad_runs.makespan),
    ):
        if name in scenarios:
            steps.append((name, functools.partial(call, infra, options, logs / name)))
    if "makespan" in scenarios:
        steps.append(("seed_baseline", lambda: seed_makespan(options, logs / "seed-baseline")))
    if "fleet" in scenarios:
        steps.append(("fleet", functools.partial(fleet.fleet, infra, options, logs / "fleet")))

    run: dict = {}
    workload_ms, repetition_steal = python_workload_ms(), StealMeter()
    for name, call in steps:
        console.log(f"  {name}")
        load, began, steal = os.getloadavg()[0], time.monotonic(), StealMeter()
        try:
            run[name] = call()
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others' figures
            console.log(f"[red]{name} failed:[/red] {exc!r}")
            run[name] = {"error": repr(exc)}
        run[name]["duration_s"] = time.monotonic() - began
        run[name]["load_average_1m"] = [load, os.getloadavg()[0]]  # before, after: other work on the machine
        run[name]["cpu_stolen_percent"] = steal.percent()
    stolen = repetition_steal.percent()
    run["machine_check"] = {"python_workload_ms": workload_ms, "cpu_stolen_percent": stolen}
    if stolen is not None and stolen > STEAL_WARNING_PERCENT:
        console.log(
            f"[yellow]warning:[/yellow] the hypervisor took {stolen:.0f} % of this machine's CPU time during "
            "the repetition: its figures are not comparable with a quiet machine's"
        )
    return run, profiler.summaries() if profiler else None


def seed_makespan(options: Options, log_dir: Path) -> dict:
    salads = seed_baseline.run_salads(
        options.salads, options.random_seed, MAKESPAN_SCALE, MAKESPAN_WORKERS, log_dir
    )
    return salad_runs.summarise_salads(
        [salad_runs.salad_figures(s["times"], s["order_to_done"], s["start_to_done"]) for s in salads]
    )


# --- Figures -------------------------------------------------------------------------------------
@dataclass
class Figure:
    key: str
    label: str
    unit: str
    target: str
    value: Callable[[dict], float | None]  # from one repetition's results


def dig(*path: str) -> Callable[[dict], float | None]:
    def value(run: dict) -> float | None:
        for part in path:
            if not isinstance(run, dict) or part not in run:
                return None
            run = run[part]
        return run

    return value


def ratio(numerator: Callable, denominator: Callable) -> Callable[[dict], float | None]:
    def value(run: dict) -> float | None:
        a, b = numerator(run), denominator(run)
        return a / b if a is not None and b else None

    return value


def figure_list(scenarios: tuple[str, ...], peers: tuple[str, ...], options: Options) -> list[Figure]:
    f: list[Figure] = [
        Figure(
            "machine.python_workload_ms",
            "machine check: CPU time of a fixed Python workload",
            "ms",
            "",
            dig("machine_check", "python_workload_ms"),
        ),
        Figure(
            "machine.cpu_stolen_percent",
            "  CPU time stolen by the hypervisor",
            "%",
            f"< {STEAL_WARNING_PERCENT:g}",
            dig("machine_check", "cpu_stolen_percent"),
        ),
    ]
    w, s = options.workers, options.slots
    if "throughput" in scenarios:
        f += [
            Figure(
                "throughput.tasks_per_s",
                f"throughput, {options.tasks:,} no-op tasks, {w}x{s} (end to end)",
                "tasks/s",
                ">= 5000",
                dig("throughput", "tasks_per_s"),
            ),
            Figure(
                "throughput.tasks_per_s_master_span",
                "  same, first task created -> last finished",
                "tasks/s",
                "",
                dig("throughput", "tasks_per_s_master_span"),
            ),
            Figure(
                "throughput.latency_p50_ms",
                "  task latency created -> finished p50",
                "ms",
                "",
                dig("throughput", "latency_p50_ms"),
            ),
            Figure(
                "throughput.latency_p95_ms",
                "  task latency p95",
                "ms",
                "",
                dig("throughput", "latency_p95_ms"),
            ),
            Figure(
                "throughput.latency_p99_ms",
                "  task latency p99",
                "ms",
                "",
                dig("throughput", "latency_p99_ms"),
            ),
        ]
        for name in ("shared", "master", *[f"worker-{i + 1}" for i in range(w)]):
            f.append(
                Figure(
                    f"memory.{name}_peak_rss_mib",
                    f"peak RSS {name}",
                    "MiB",
                    "< 200",
                    dig("throughput", "peak_rss_mib", name),
                )
            )
        for name in ("shared", "master", "workers", "postgres"):
            f.append(
                Figure(
                    f"cpu.{name}_ms_per_task",
                    f"CPU per task: {name}",
                    "ms",
                    "",
                    dig("throughput", "cpu_ms_per_task", name),
                )
            )
    if "peers" in scenarios:
        for peer in peers:
            for mode, words in (("end_to_end", "end to end"), ("drain", "queue filled first")):
                f.append(
                    Figure(
                        f"peers.{peer}.{mode}_tasks_per_s",
                        f"{peer}, {words}",
                        "tasks/s",
                        "",
                        dig(peer, mode, "tasks_per_s"),
                    )
                )
            if "throughput" in scenarios:
                for mode, words in (
                    ("end_to_end", "end to end"),
                    ("drain", "vs its queue-filled-first figure"),
                ):
                    f.append(
                        Figure(
                            f"peers.{peer}.ratio_{mode}",
                            f"  salad / {peer}, {words}",
                            "x",
                            "> 1",
                            ratio(dig("throughput", "tasks_per_s"), dig(peer, mode, "tasks_per_s")),
                        )
                    )
    if "history" in scenarios:
        f += [
            Figure(
                "history.tasks_per_s",
                f"throughput with {options.history_tasks:,} finished tasks stored",
                "tasks/s",
                "",
                dig("history", "tasks_per_s"),
            ),
            Figure(
                "history.latency_p99_ms", "  task latency p99", "ms", "", dig("history", "latency_p99_ms")
            ),
            Figure(
                "history.tasks_stored_after",
                "  task rows stored after the run (retention)",
                "rows",
                "",
                dig("history", "tasks_stored_after"),
            ),
        ]
        if "throughput" in scenarios:
            f.append(
                Figure(
                    "history.ratio_to_empty",
                    "  history / empty throughput",
                    "x",
                    ">= 0.90",
                    ratio(dig("history", "tasks_per_s"), dig("throughput", "tasks_per_s")),
                )
            )
    if "dispatch" in scenarios:
        f += [
            Figure(
                "dispatch.queued_to_claimed_p50_ms",
                "dispatch, idle workers: queued -> claimed p50",
                "ms",
                "<= 5",
                dig("dispatch", "queued_to_claimed_p50_ms"),
            ),
            Figure(
                "dispatch.queued_to_claimed_p99_ms",
                "  queued -> claimed p99",
                "ms",
                "<= 25",
                dig("dispatch", "queued_to_claimed_p99_ms"),
            ),
            Figure(
                "dispatch.order_to_claimed_p50_ms",
                "  order posted -> claimed p50 (with intake)",
                "ms",
                "",
                dig("dispatch", "order_to_claimed_p50_ms"),
            ),
            Figure(
                "dispatch.order_to_claimed_p99_ms",
                "  order posted -> claimed p99",
                "ms",
                "",
                dig("dispatch", "order_to_claimed_p99_ms"),
            ),
            Figure(
                "dispatch.queued_to_done_p50_ms",
                "  queued -> result recorded p50 (to the worker and back)",
                "ms",
                "",
                dig("dispatch", "queued_to_done_p50_ms"),
            ),
            Figure(
                "dispatch.queued_to_done_p99_ms",
                "  queued -> result recorded p99",
                "ms",
                "",
                dig("dispatch", "queued_to_done_p99_ms"),
            ),
        ]
    if "scaling" in scenarios:
        for count in sorted(options.scaling_workers):
            key = str(count)
            f += [
                Figure(
                    f"scaling.{key}.tasks_per_s",
                    f"scaling, 50 ms tasks, prefetch {options.scaling_prefetch}, {count} worker(s): "
                    "throughput",
                    "tasks/s",
                    "",
                    dig("scaling", key, "tasks_per_s"),
                ),
                Figure(
                    f"scaling.{key}.speedup",
                    f"  speedup vs {min(options.scaling_workers)} worker",
                    "x",
                    f"{count}",
                    dig("scaling", key, "speedup"),
                ),
                Figure(
                    f"scaling.{key}.efficiency",
                    "  efficiency vs ideal",
                    "%",
                    ">= 90",
                    lambda run, key=key: percent(dig("scaling", key, "efficiency")(run)),
                ),
            ]
    if "makespan" in scenarios:
        f += [
            Figure(
                "makespan.salad.order_to_done_ratio",
                f"makespan, {options.salads} salads, prefetch {options.makespan_prefetch}: "
                "salad order -> done / lower bound",
                "x",
                "<= 1.10",
                dig("makespan", "order_to_done_ratio"),
            ),
            Figure(
                "makespan.salad.start_to_done_ratio",
                "  salad first claim -> done / lower bound",
                "x",
                "",
                dig("makespan", "start_to_done_ratio"),
            ),
            Figure(
                "makespan.seed.order_to_done_ratio",
                "  seed baseline order -> done / lower bound",
                "x",
                "",
                dig("seed_baseline", "order_to_done_ratio"),
            ),
            Figure(
                "makespan.seed.start_to_done_ratio",
                "  seed baseline first hand-out -> done / lower bound",
                "x",
                "",
                dig("seed_baseline", "start_to_done_ratio"),
            ),
            Figure(
                "makespan.optimum_ratio",
                "  (optimal schedule / lower bound)",
                "x",
                "",
                dig("makespan", "optimum_ratio"),
            ),
        ]
    if "fleet" in scenarios:
        f += fleet_figures(options)
    return f


def fleet_figures(options: Options) -> list[Figure]:
    n = f"{options.fleet_workers:,}"
    rows = [
        ("idle.cpu_share_of_core", f"fleet, {n} idle workers, {options.fleet_masters} Masters: CPU of Masters + "
         "Shared + PostgreSQL", "cores", "<= 0.20"),
        ("idle.http_requests_per_s", "  HTTP requests", "req/s", ""),
        ("idle.pg_transactions_per_s", "  PostgreSQL transactions", "xact/s", ""),
        ("idle.pg_statements_per_s", "  PostgreSQL statements", "stmt/s", ""),
        ("idle.master_rss_mib", "  Master RSS with the open long-polls (largest)", "MiB", "<= 200"),
        ("idle.pg_connections_max", "  PostgreSQL connections open (max)", "conn", "bounded by the pools"),
        ("idle.pg_connections_active_max", "  PostgreSQL connections running a statement (max)", "conn", ""),
        ("dispatch.queued_to_claimed_p50_ms", f"fleet dispatch, {n} waiting: queued -> claimed p50", "ms", "<= 5"),
        ("dispatch.queued_to_claimed_p99_ms", "  queued -> claimed p99", "ms", "<= 25"),
        ("dispatch.queued_to_done_p50_ms", "  queued -> result recorded p50", "ms", "<= 5"),
        ("dispatch.queued_to_done_p99_ms", "  queued -> result recorded p99", "ms", "<= 25"),
        ("dispatch.order_to_done_p50_ms", "  order posted -> result recorded p50", "ms", ""),
        ("dispatch.order_to_done_p99_ms", "  order posted -> result recorded p99", "ms", ""),
        ("dispatch.statements_per_task", "  database statements per one-fruit order, above idle", "stmt", "<= 5"),
        ("dispatch.statements_per_task_in_phase", "  same, idle fleet's included", "stmt", ""),
        ("dispatch.task_statements_per_task", "  of which on the tasks table (split, claims, result)", "stmt",
         ""),
        ("dispatch.transactions_per_task", "  database transactions per one-fruit order, above idle", "xact", ""),
        ("throughput.tasks_per_s", f"fleet throughput, {options.fleet_tasks:,} no-op tasks, {n} single-slot "
         "workers", "tasks/s", ">= 3000"),
        ("throughput.latency_p50_ms", "  task latency created -> finished p50", "ms", ""),
        ("throughput.latency_p99_ms", "  task latency p99", "ms", ""),
        ("churn.steady_queued_to_claimed_p99_ms", f"fleet churn, salads: queued -> claimed p99, no churn",
         "ms", ""),
        ("churn.churn_queued_to_claimed_p99_ms", f"  same, {options.fleet_churn_per_minute} workers leaving and "
         "joining per minute", "ms", "unchanged"),
        ("churn.workers_left", "  workers that left (as many joined)", "workers", ""),
        ("churn.tasks_lost", "  tasks lost", "tasks", "0"),
        ("churn.tasks_run_twice", "  tasks run twice", "tasks", "0"),
        ("churn.leases_expired", "  leases expired (requeued)", "tasks", ""),
    ]
    return [Figure(f"fleet.{key}", label, unit, target, dig("fleet", *key.split(".")))
            for key, label, unit, target in rows]


def percent(value: float | None) -> float | None:
    return None if value is None else value * 100


def figures(
    runs: list[dict], scenarios: tuple[str, ...], peers: tuple[str, ...], options: Options
) -> list[dict]:
    result = []
    for figure in figure_list(scenarios, peers, options):
        values = [v for v in (figure.value(run) for run in runs) if v is not None]
        summary = {
            "key": figure.key,
            "label": figure.label,
            "unit": figure.unit,
            "target": figure.target,
            "values": values,
        }
        if values:
            summary |= {"median": statistics.median(values), "min": min(values), "max": max(values)}
        result.append(summary)
    return result


# --- The machine ---------------------------------------------------------------------------------
def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    from tests.postgres import find_binary

    postgres = subprocess.run(
        [find_binary("postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    redis = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split(" sha")[0]
    return {
        "salad": salad_source(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": postgres,
        "redis": redis.strip(),
        "load_average_at_start": os.getloadavg(),
    }


def salad_source() -> dict:
    """Which salad was measured: its folder and commit (BENCH_SALAD_COMMIT for a snapshot without .git)."""
    import salad

    folder = Path(salad.__file__).resolve().parent
    described = subprocess.run(
        ["git", "-C", str(folder), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {"folder": str(folder), "commit": os.environ.get("BENCH_SALAD_COMMIT") or described or "unknown"}
