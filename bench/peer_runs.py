"""The peers, on the same machine in the same run: each pushes the same number of no-op tasks through the
same number of worker processes as salad. The peer scripts in bench/peers/ run under bench/.venv."""

import json
import os
import subprocess
from pathlib import Path

from salad.core.db import libpq_url

from bench.infra import PEERS_DIR, Infra, python_for_peers, stop_process

PEERS = ("celery", "procrastinate", "pgqueuer")
PGQUEUER_BATCH = 10  # jobs per dequeue: PgQueuer's default
ENQUEUE_CHUNK = 100  # jobs per enqueue statement, as salad's orders carry 100 fruits


def run(command: list[str], env: dict[str, str], log: Path, timeout: float) -> str:
    with log.open("ab") as err:
        done = subprocess.run(
            command,
            env={**os.environ, **env},
            cwd=PEERS_DIR,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}); see {log}")
    return done.stdout.decode()


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, env={**os.environ, **env}, cwd=PEERS_DIR, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def commands(peer: str, infra: Infra, workers: int, slots: int, log: Path) -> tuple[dict, list, list[str]]:
    """(environment, worker commands, the peer script's command prefix) for a fresh queue of `peer`."""
    python = python_for_peers()
    if peer == "celery":
        env = {"BENCH_REDIS_URL": infra.redis_url()}
        run(
            [python, "-c", "import redis, os; redis.Redis.from_url(os.environ['BENCH_REDIS_URL']).flushdb()"],
            env,
            log,
            60,
        )
        worker = [
            [
                python,
                "-m",
                "celery",
                "-A",
                "celery_peer",
                "worker",
                "--pool",
                "prefork",
                "-c",
                str(workers),
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
                "-n",
                "bench@%h",
            ]
        ]
        return env, worker, [python, "celery_peer.py"]
    if peer == "pgqueuer":
        dsn = libpq_url(infra.empty_database("pgqueuer"))
        run([python, "pgqueuer_peer.py", "install", dsn], {}, log, 120)
        return (
            {},
            [[python, "pgqueuer_peer.py", "worker", dsn, str(PGQUEUER_BATCH)]] * workers,
            [python, "pgqueuer_peer.py", dsn],
        )
    if peer == "procrastinate":
        env = {"BENCH_DSN": libpq_url(infra.empty_database("procrastinate"))}
        run([python, "procrastinate_peer.py", "install"], env, log, 120)
        return (
            env,
            [[python, "procrastinate_peer.py", "worker", str(slots)]] * workers,
            [python, "procrastinate_peer.py"],
        )
    raise ValueError(f"unknown peer {peer}")


def script(prefix: list[str], command: str, *args: int) -> list[str]:
    """The peer script's subcommand; pgqueuer's scripts take the DSN right after the subcommand."""
    head, rest = prefix[:2], prefix[2:]
    return [*head, command, *rest, *map(str, args)]


def measure(peer: str, infra: Infra, tasks: int, workers: int, slots: int, log_dir: Path) -> dict:
    """Two figures for `peer`, each with fresh queues:

    - end_to_end: workers running, the producer pushes `tasks` no-op tasks; first push -> last task done
      (salad's throughput figure is measured the same way);
    - drain: the queue filled first, then the workers start; first task done -> last task done
      (the peer's best case: no producer competing for the CPU).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{peer}.log"
    timeout = max(300.0, tasks / 20)
    chunk = [] if peer == "celery" else [ENQUEUE_CHUNK]
    figures = {}

    env, worker_commands, prefix = commands(peer, infra, workers, slots, log)
    processes = [spawn(command, env, log) for command in worker_commands]
    try:
        figures["end_to_end"] = json.loads(run(script(prefix, "produce", tasks, *chunk), env, log, timeout))
    finally:
        for process in processes:
            stop_process(process)

    env, worker_commands, prefix = commands(peer, infra, workers, slots, log)
    filled = json.loads(run(script(prefix, "fill", tasks, *chunk), env, log, timeout))
    processes = [spawn(command, env, log) for command in worker_commands]
    try:
        figures["drain"] = json.loads(run(script(prefix, "drain", tasks), env, log, timeout))
        figures["drain"]["enqueue_seconds"] = filled["enqueue_seconds"]
    finally:
        for process in processes:
            stop_process(process)
    for figure in figures.values():
        figure["tasks_per_s"] = figure["tasks"] / figure["seconds"]
    return figures
