"""How fast this machine is while the suite runs: two readings that say whether two runs can be compared.

The same code measured 3x apart from one day to the next here (another CPU, or a neighbour on the host), and
nothing in a run said so. Each repetition records the share of CPU time the hypervisor stole from this guest
and the CPU time of a fixed Python workload shaped like salad's per-task work (rows as dicts, JSON out and back).
"""

import json
import statistics
import time
from pathlib import Path

STEAL_WARNING_PERCENT = 5.0
WORKLOAD_ROWS, WORKLOAD_ROUNDS, WORKLOAD_TRIES = 1000, 20, 5


def cpu_ticks() -> tuple[int, int]:
    """The machine's CPU time so far, in clock ticks: (all of it, the part stolen), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0, 0
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks), ticks[7]


class StealMeter:
    """The share of the machine's CPU time stolen by the hypervisor since the meter was made."""

    def __init__(self) -> None:
        self.start = cpu_ticks()

    def percent(self) -> float | None:
        total, stolen = (now - then for now, then in zip(cpu_ticks(), self.start, strict=True))
        return 100 * stolen / total if total > 0 else None


def python_workload_ms() -> float:
    """CPU milliseconds of a fixed workload: WORKLOAD_ROUNDS x (WORKLOAD_ROWS task-like rows to JSON and back);
    the median of WORKLOAD_TRIES tries, so one interruption does not count."""
    rows = [
        {"id": i, "order_id": i // 100, "fruit": "banana", "status": "succeeded", "lease_id": f"{i:032x}"}
        for i in range(WORKLOAD_ROWS)
    ]
    tries = []
    for _ in range(WORKLOAD_TRIES):
        began = time.process_time()
        for _ in range(WORKLOAD_ROUNDS):
            json.loads(json.dumps(rows))
        tries.append((time.process_time() - began) * 1000)
    return statistics.median(tries)
