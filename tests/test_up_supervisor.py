"""`salad up` as a user runs it, with real processes: it supervises its services, fails fast on a port in use,
keeps its URLs and tokens in .salad/ for the next run, and the other commands find the stack from below."""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from salad.cli.stack import free_port
from salad.core.embedded import EmbeddedPostgres

START_SECONDS = 240  # PostgreSQL, then the services (START_TIMEOUT: 120 s) on a busy machine


def clean_env(**env: str) -> dict[str, str]:
    """This environment without SALAD_* settings: the commands must find the stack by themselves."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SALAD_")} | {"COLUMNS": "200", **env}


def salad(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "salad", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=clean_env(**env))


@pytest.fixture
def workdir():
    """A folder other users may enter: as root, the embedded PostgreSQL runs as its own user."""
    folder = Path(tempfile.mkdtemp(prefix="salad-up-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Up:
    """A `salad up` subprocess whose output (stdout and stderr) is read as it comes."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.folder, self.lines, self.changed, self.ended = folder, [], threading.Condition(), False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "salad", "up", "--time-scale", "0.01", *args], cwd=folder,
            env=clean_env(**(env or {})),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def expect(self, text: str, timeout: float = 90) -> str:
        """Wait for a line holding `text`; return it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                assert not self.ended, f"salad up ended before {text!r}:\n{self.output}"
                assert time.monotonic() < deadline, f"no {text!r} in salad up's output:\n{self.output}"
                self.changed.wait(0.5)

    @property
    def state(self) -> dict:
        return json.loads((self.folder / ".salad" / "stack.json").read_text())

    def stop(self) -> int:
        """SIGTERM (Ctrl-C's way out); the whole session killed if it hangs, and its PostgreSQL stopped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()
        finally:
            postgres = EmbeddedPostgres(self.folder / ".salad" / "postgres")
            if (postgres.folder / "PG_VERSION").exists() and postgres.running():
                postgres.stop("immediate")


@contextmanager
def running_up(folder: Path, *args: str):
    up = Up(folder, *args)
    try:
        up.expect("Add a worker:", timeout=START_SECONDS)
        yield up
    finally:
        code = up.stop()
    assert code == 0, up.output


def ordered_and_completed(cwd: Path) -> dict:
    placed = salad("order", "apple", "kiwi", "--wait", "--json", cwd=cwd)
    assert placed.returncode == 0, placed.stdout + placed.stderr
    final = json.loads(placed.stdout)
    assert final["status"] == "completed"
    return final


def test_a_killed_worker_or_master_is_reported_and_restarted_while_the_rest_serve(workdir):
    below = workdir / "a" / "b"
    below.mkdir(parents=True)
    with running_up(workdir, "--workers", "2", "--shared-port", str(free_port()),
                    "--master-port", str(free_port())) as up:
        worker_pid = up.state["services"]["worker-1"]["pid"]
        os.kill(worker_pid, signal.SIGKILL)

        up.expect(f"worker-1 (pid {worker_pid}) was killed by SIGKILL")
        up.expect("worker-1 restarted")
        ordered_and_completed(below)  # Shared, Master and worker-2 went on serving
        up.expect("worker-1 is serving again")
        listed = salad("workers", "--json", cwd=below)
        assert listed.returncode == 0, listed.stderr
        live = {w["name"]: w["live"] for w in json.loads(listed.stdout)}
        assert live == {"worker-1": True, "worker-2": True}
        assert up.state["services"]["worker-1"]["pid"] not in (worker_pid, None)

        master_pid = up.state["services"]["master"]["pid"]
        os.kill(master_pid, signal.SIGKILL)
        up.expect(f"master (pid {master_pid}) was killed by SIGKILL")
        up.expect("master is serving again")
        ordered_and_completed(below)


def test_a_port_in_use_fails_at_once_naming_it_and_its_holder(workdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        refused = salad("up", "--shared-port", str(port), "--master-port", str(free_port()), cwd=workdir)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert time.monotonic() - started < 60  # the time to start Python here; it waited 120 s for readiness
    assert f"port {port} (for Shared) is in use by pid {os.getpid()}" in refused.stderr
    assert "--shared-port" in refused.stderr and refused.stdout == ""
    assert not (workdir / ".salad").exists(), "nothing is made before the ports are known to be free"


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_second_up_reuses_urls_and_tokens_and_a_worker_joins_with_no_flags(workdir):
    home = workdir / ".salad"
    with running_up(workdir, "--workers", "1", "--shared-port", str(free_port()),
                    "--master-port", str(free_port())) as first:
        before = first.state
        again = salad("up", cwd=workdir, timeout=60)
    assert private(home / "stack.json") and private(home / "client.token")
    (home / "client.token").chmod(0o644)

    with running_up(workdir, "--workers", "1") as second:
        after = second.state
        below = workdir / "sub"
        below.mkdir()
        joined = subprocess.Popen([sys.executable, "-m", "salad", "worker"], cwd=below, env=clean_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90
            while not any(w["name"].endswith(f"-{joined.pid}") and w["live"] for w in workers(below)):
                assert joined.poll() is None, joined.communicate()
                assert time.monotonic() < deadline, "the joined worker never registered"
                time.sleep(0.5)
            ordered_and_completed(below)
        finally:
            joined.terminate()
            _, joined_err = joined.communicate(timeout=60)

    assert after["tokens"] == before["tokens"]
    assert (after["shared_url"], after["master_url"]) == (before["shared_url"], before["master_url"])
    assert private(home / "client.token"), "salad up tightens its files every time"
    assert f"Web page {before['shared_url']}/#token={before['tokens']['client']}" in second.output
    assert again.returncode == 1 and f"a salad up (pid {before['pid']}) is already running" in again.stderr
    assert f"joining the local stack of {home}" in joined_err


def workers(cwd: Path) -> list[dict]:
    listed = salad("workers", "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_without_a_stack_the_commands_say_where_they_looked(workdir):
    if any((folder / ".salad").is_dir() for folder in workdir.parents):
        pytest.skip("a .salad/ folder above the temporary folder would be found")
    port = free_port()
    missing = salad("status", "1", "--shared-url", f"http://127.0.0.1:{port}/", cwd=workdir)
    looked = salad("workers", cwd=workdir)
    elsewhere = salad("workers", cwd=workdir, SALAD_HOME=str(workdir / "nowhere"))

    assert missing.returncode == 4 and missing.stdout == ""
    assert f"cannot reach http://127.0.0.1:{port}/v1/orders/1" in missing.stderr  # no //v1
    assert looked.returncode == 4 and f"no .salad/ in {workdir} or any folder above it" in looked.stderr
    assert "salad up" in looked.stderr
    assert elsewhere.returncode == 4
    assert f"SALAD_HOME={workdir / 'nowhere'} is not a folder" in elsewhere.stderr
