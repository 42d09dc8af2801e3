"""`python -m bench`: run the benchmark suite, print the table, write the JSON (see bench/README.md)."""

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.peer_runs import PEERS
from bench.salad_runs import Options
from bench.suite import SCENARIOS, run_suite

QUICK = {
    "tasks": 2_000,
    "dispatch_orders": 20,
    "scaling_tasks_per_worker": 20,
    "salads": 5,
    "history_tasks": 100_000,
    "fleet_workers": 200,
    "fleet_idle_seconds": 10.0,
    "fleet_dispatch_orders": 20,
    "fleet_tasks": 2_000,
    "fleet_churn_seconds": 10.0,
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def names(text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in chosen if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return chosen


def key_values(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--reps", type=int, help="repetitions; each figure is their median (default 3, quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: small counts, one repetition")
    parser.add_argument(
        "--scenarios",
        type=lambda t: names(t, SCENARIOS),
        default=SCENARIOS,
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--peers",
        type=lambda t: names(t, PEERS),
        default=PEERS,
        help=f"comma-separated subset of {','.join(PEERS)}",
    )
    parser.add_argument(
        "--tasks", type=int, help="no-op tasks in the throughput, history and peer runs (20000)"
    )
    parser.add_argument("--workers", type=int, default=Options.workers, help="worker processes (W)")
    parser.add_argument("--slots", type=int, default=Options.slots, help="slots per salad worker (S)")
    parser.add_argument("--dispatch-orders", type=int, help="one-fruit orders in the dispatch run (100)")
    parser.add_argument(
        "--scaling-workers",
        type=lambda t: tuple(int(n) for n in t.split(",")),
        default=Options.scaling_workers,
        help="worker counts of the scaling run (1,2,4,8,16)",
    )
    parser.add_argument("--scaling-tasks-per-worker", type=int, help="50 ms tasks per worker (100)")
    parser.add_argument(
        "--scaling-prefetch", type=int, help="SALAD_PREFETCH of the scaling run's workers (6; 0 for none)"
    )
    parser.add_argument("--salads", type=int, help="salads in the makespan run (20)")
    parser.add_argument(
        "--makespan-prefetch", type=int, help="SALAD_PREFETCH of the makespan run's workers (1; 0 for none)"
    )
    parser.add_argument(
        "--history-tasks", type=int, help="finished tasks stored before the history run (1000000)"
    )
    parser.add_argument(
        "--salad-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for every salad process (repeatable)",
    )
    parser.add_argument(
        "--history-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the history run only, e.g. the retention setting (repeatable)",
    )
    parser.add_argument("--fleet-workers", type=int, help="simulated workers of the fleet run (1000)")
    parser.add_argument("--fleet-processes", type=int, help="processes simulating them (4)")
    parser.add_argument("--fleet-masters", type=int, help="Master replicas of the fleet run (2)")
    parser.add_argument("--fleet-idle-seconds", type=float, help="idle fleet measured this long (60)")
    parser.add_argument("--fleet-dispatch-orders", type=int, help="one-fruit orders with the fleet waiting (100)")
    parser.add_argument("--fleet-tasks", type=int, help="no-op tasks across the fleet's workers (20000)")
    parser.add_argument(
        "--fleet-churn-seconds", type=float, help="salads this long, then as long with churn (60)"
    )
    parser.add_argument(
        "--fleet-churn-per-minute", type=int, help="workers leaving and as many joining per minute (100)"
    )
    parser.add_argument("--settle", type=float, help="seconds fresh workers get before a measurement (1.0)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on Shared, Master and worker-1 during the first throughput run",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for logs, profiles and the JSON"
    )
    parser.add_argument("--json", type=Path, help="where to write the results (default OUT/results.json)")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    chosen = {
        **(QUICK if args.quick else {}),
        **{k: v for k, v in vars(args).items() if k in Options.__dataclass_fields__ and v is not None},
    }
    chosen["salad_env"] = key_values(args.salad_env)
    chosen["history_env"] = key_values(args.history_env)
    chosen["profile"] = args.profile
    return Options(**chosen)


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("x",):
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if 0 < abs(value) < 1:
        return f"{value:.2g}"  # CPU per task in ms: 0.056, not 0.1
    return f"{value:.1f}"


def table(results: dict) -> Table:
    reps = results["options"]["reps"]
    out = Table(title=f"salad benchmark ({reps} repetition{'s' * (reps > 1)}; median, min, max)")
    for column, justify in (
        ("figure", "left"),
        ("median", "right"),
        ("min", "right"),
        ("max", "right"),
        ("unit", "left"),
        ("target", "left"),
    ):
        out.add_column(column, justify=justify)
    for f in results["figures"]:
        out.add_row(
            f["label"],
            *(number(f.get(k), f["unit"]) for k in ("median", "min", "max")),
            f["unit"],
            f["target"],
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    options = options_from(args)
    reps = args.reps or (1 if args.quick else 3)
    console = Console()
    path = args.json or args.out / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(results: dict) -> None:
        path.write_text(json.dumps(results, indent=1, default=str))

    results = run_suite(options, reps, args.scenarios, args.peers, args.out, console, save)
    save(results)
    console.print(table(results))
    if results["profile"]:
        console.print(f"profiles: {args.out / 'profile'}/*.top.txt")
    console.print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
