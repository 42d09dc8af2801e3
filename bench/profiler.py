"""py-spy on salad's processes during a throughput run: where the CPU goes, per function.

Samples Shared, Master and the first worker (non-blocking, so the run is barely slowed; only threads holding
the GIL, so waits on the network, the database or the GIL itself do not count: what is left is the Python
work that competes for the process's one core), then folds the stacks into self time (the function itself)
and total time (the function and what it calls).
"""

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.infra import PEERS_PYTHON

RATE = 200  # samples per second
TOP = 30  # functions listed per process
LINE_NUMBER = re.compile(r":\d+\)$")
ENTRY_POINTS = ("(salad/__main__.py)", "(salad/cli/main.py)")  # in every sample of the main thread: not news


def py_spy() -> str:
    return str(PEERS_PYTHON.parent / "py-spy")


class Profiler:
    def __init__(self, out_dir: Path, names: tuple[str, ...] = ("shared", "master", "worker-1")) -> None:
        self.out_dir = out_dir
        self.names = names
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, pids: dict[str, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            raw = self.out_dir / f"{name}.folded"
            self.processes[name] = subprocess.Popen(
                [
                    py_spy(),
                    "record",
                    "--pid",
                    str(pids[name]),
                    "--rate",
                    str(RATE),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(self.out_dir / f"{name}.py-spy.log").open("wb"),
            )

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    def summaries(self) -> dict[str, dict]:
        result = {}
        for name in self.names:
            raw = self.out_dir / f"{name}.folded"
            if raw.exists():
                result[name] = summarise(raw)
                (self.out_dir / f"{name}.top.txt").write_text(render(name, result[name]))
        return result


def frame_name(frame: str) -> str:
    """`claim (salad/master/tasks.py:71)` -> `claim (salad/master/tasks.py)`: one entry per function."""
    frame = LINE_NUMBER.sub(")", frame.strip())
    return frame.replace(str(Path.cwd()) + "/", "")


def summarise(folded: Path) -> dict:
    own, total, samples = Counter(), Counter(), 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [
            frame_name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n

    def share(counts: Counter) -> list[dict]:
        return [{"function": f, "share": n / samples} for f, n in counts.most_common(TOP)] if samples else []

    ours = Counter({f: n for f, n in total.items() if "salad/" in f and not f.endswith(ENTRY_POINTS)})
    return {"samples": samples, "self": share(own), "salad_total": share(ours), "total": share(total)}


def render(name: str, summary: dict) -> str:
    lines = [f"# {name}: {summary['samples']} samples of threads holding the GIL", "", "## self", ""]
    lines += [f"{row['share']:6.1%}  {row['function']}" for row in summary["self"]]
    lines += ["", "## salad's own functions, total (with callees; the entry points run in every sample)", ""]
    lines += [f"{row['share']:6.1%}  {row['function']}" for row in summary["salad_total"]]
    lines += ["", "## total (with callees)", ""]
    lines += [f"{row['share']:6.1%}  {row['function']}" for row in summary["total"]]
    return "\n".join(lines) + "\n"
