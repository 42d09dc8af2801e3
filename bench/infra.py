"""What every scenario stands on: PostgreSQL (fsync on), Redis, fresh databases, stacks, /proc readings."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from salad.cli.stack import LocalStack, free_port
from salad.core.db import libpq_url
from salad.core.migrate import upgrade

from tests.postgres import PostgresCluster, create_database

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / "bench" / ".venv" / "bin" / "python"  # bench/setup.sh installs the peers there
PEERS_DIR = ROOT / "bench" / "peers"

# The targets are for PostgreSQL with fsync on: durable commits, as in production.
PG_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "max_connections": "300"}
TEMPLATE = "bench_template"  # migrated once; every run gets a copy
PROCESS_STOP_TIMEOUT = 20.0  # seconds a peer process gets after SIGTERM
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Infra:
    """The PostgreSQL cluster (and, on demand, a Redis server) shared by every scenario of one suite run."""

    work_dir: Path
    cluster: PostgresCluster | None = None
    redis_process: subprocess.Popen | None = None
    redis_port: int = 0
    _names: dict[str, int] = field(default_factory=dict)

    def start(self) -> "Infra":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = PostgresCluster(settings=PG_SETTINGS).start()
        upgrade(create_database(self.admin_url, TEMPLATE))
        return self

    @property
    def admin_url(self) -> str:
        return self.cluster.admin_url

    def fresh_database(self, prefix: str, template: str = TEMPLATE) -> str:
        """A new database copied from `template` (file copy: fast for big templates)."""
        self._names[prefix] = self._names.get(prefix, 0) + 1
        name = f"{prefix}_{self._names[prefix]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.url_of(name)

    def empty_database(self, prefix: str) -> str:
        return self.fresh_database(prefix, template="template0")

    def url_of(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, WAL writer, autovacuum...)."""
        postmaster = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *children_of(postmaster)]

    def redis_url(self) -> str:
        if self.redis_process is None:
            self.redis_port = free_port()
            self.redis_process = subprocess.Popen(
                [
                    shutil.which("redis-server") or "redis-server",
                    "--port",
                    str(self.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.work_dir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for_port(self.redis_port)
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def stop(self) -> None:
        if self.redis_process is not None:
            stop_process(self.redis_process)
        if self.cluster is not None:
            self.cluster.remove()


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")
            time.sleep(0.05)


def stop_process(process: subprocess.Popen, timeout: float = PROCESS_STOP_TIMEOUT) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --- /proc readings ------------------------------------------------------------------------------
def status_mib(pid: int, field: str) -> float | None:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM...) in MiB; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the process's peak resident memory so far."""
    return status_mib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop().

    Each group is a function listing its pids, asked again at stop() so that processes born in between
    (PostgreSQL backends of a growing pool) count whole; processes that exit in between are missed.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[int, float] = {}

    def start(self) -> "CpuMeter":
        self.before = {pid: cpu_seconds(pid) for pids in self.groups.values() for pid in pids()}
        return self

    def stop(self) -> dict[str, float]:
        return {
            name: sum(max(0.0, cpu_seconds(pid) - self.before.get(pid, 0.0)) for pid in pids())
            for name, pids in self.groups.items()
        }


# --- salad ---------------------------------------------------------------------------------------
@contextmanager
def salad_stack(
    database_url: str, workers: int, slots: int, time_scale: float, env: dict[str, str], log_dir: Path
) -> Iterator[LocalStack]:
    """Shared, Master and `workers` worker processes on `database_url`; stopped on exit."""
    stack = LocalStack(
        libpq_url(database_url), workers=workers, slots=slots, time_scale=time_scale, env=env, log_dir=log_dir
    )
    with stack:
        yield stack


def service_pids(stack: LocalStack) -> dict[str, int]:
    return {s.name: s.process.pid for s in stack.services}


def python_for_peers() -> str:
    if not PEERS_PYTHON.exists():
        raise RuntimeError("bench/.venv is missing: run bench/setup.sh (bench/run.sh does)")
    return str(PEERS_PYTHON)


def this_python() -> str:
    return sys.executable
