"""A local stack: Shared, Master and N workers as child processes of this one (`salad up`, tests, demo)."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from salad.core.auth import bearer_header
from salad.core.migrate import upgrade

# seconds for every service to answer /readyz: on a slowed machine importing Shared's and Master's modules
# alone took 33-37 s. A service that exits is reported at once; only one that hangs waits this long.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0  # seconds for a process to exit after SIGTERM


class StartFailed(RuntimeError):
    """A service of the stack exited or did not answer /readyz in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path | None = None
    command: str = ""  # the `salad` command it runs, and its own settings: what restart_service starts again
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of its log: why it stopped, where the stack's folder may go with it (the demo)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalStack:
    database_url: str
    workers: int = 2
    slots: int = 2
    time_scale: float = 1.0
    env: dict[str, str] = field(default_factory=dict)  # extra SALAD_* settings for every process
    log_dir: Path | None = None  # where each process's JSON log goes; None: inherit this terminal
    shared_port: int = 0  # 0: pick a free port
    master_port: int = 0
    services: list[Service] = field(default_factory=list)
    extra_processes: list[subprocess.Popen] = field(default_factory=list)  # e.g. a local Prometheus
    tokens: dict[str, str] = field(default_factory=lambda: {
        role: secrets.token_urlsafe(32) for role in ("client", "worker", "master")})

    @property
    def client_token(self) -> str:
        return self.tokens["client"]

    @property
    def client_headers(self) -> dict[str, str]:
        """What a client of the public API sends."""
        return bearer_header(self.client_token)

    @property
    def shared_url(self) -> str:
        return self.find("shared").url

    @property
    def master_url(self) -> str:
        return self.find("master").url

    @property
    def worker_services(self) -> list[Service]:
        return [s for s in self.services if s.name.startswith("worker")]

    def find(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def spawn(self, name: str, command: str, port: int, extra_env: dict[str, str]) -> Service:
        tokens = {f"SALAD_{role.upper()}_TOKEN": token for role, token in self.tokens.items()}
        env = {**os.environ, **tokens, **self.env, "SALAD_DATABASE_URL": self.database_url,
               "SALAD_PORT": str(port), "SALAD_HOST": "127.0.0.1", **extra_env}
        log_path, output = None, None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            output = log_path.open("ab")
        process = subprocess.Popen([sys.executable, "-m", "salad", command], env=env, stdout=output,
                                   stderr=subprocess.STDOUT if output else None)
        if output is not None:
            output.close()  # the child holds its own copy
        service = Service(name, f"http://127.0.0.1:{port}", process, log_path, command, extra_env)
        self.services.append(service)
        return service

    def start(self) -> "LocalStack":
        upgrade(self.database_url)
        shared_port = self.shared_port or free_port()
        master_port = self.master_port or free_port()
        shared_url = f"http://127.0.0.1:{shared_port}"
        self.spawn("shared", "shared", shared_port, {"SALAD_MASTER_URL": f"http://127.0.0.1:{master_port}"})
        self.spawn("master", "master", master_port, {"SALAD_SHARED_URL": shared_url})
        self.wait_ready(self.services)
        for _ in range(self.workers):
            self.add_worker()
        return self

    def add_worker(self, name: str | None = None, wait: bool = True, **extra_env: str) -> Service:
        """Start one more worker process (named worker-1, worker-2, ... unless `name` is given)."""
        name = name or f"worker-{len(self.worker_services) + 1}"
        env = {"SALAD_MASTER_URL": self.master_url, "SALAD_WORKER_NAME": name, "SALAD_SLOTS": str(self.slots),
               "SALAD_TIME_SCALE": str(self.time_scale), **extra_env}
        service = self.spawn(name, "worker", free_port(), env)
        if wait:
            self.wait_ready([service])
        return service

    def add_master(self, name: str = "master-2") -> Service:
        """Another Master replica on the same database (for multi-replica runs)."""
        service = self.spawn(name, "master", free_port(), {"SALAD_SHARED_URL": self.shared_url})
        self.wait_ready([service])
        return service

    def wait_ready(self, services: list[Service], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for service in services:
            while True:
                if service.process.poll() is not None:
                    exited = f"{service.name} exited with code {service.process.returncode}"
                    if service.log_path is not None:
                        exited += f"; its log {service.log_path} ends:\n{service.log_tail()}"
                    raise StartFailed(exited)
                try:
                    if httpx.get(f"{service.url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise StartFailed(f"{service.name} not ready after {timeout:.0f}s")
                time.sleep(0.1)

    def stop_service(self, service: Service, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait; SIGKILL only if it does not exit in time. Returns the exit code."""
        service.signal(signal.SIGTERM)
        try:
            return service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            service.process.kill()
            return service.process.wait()

    def respawn(self, service: Service) -> Service:
        """Start a service that has exited again: same name, command, port and settings (no wait)."""
        self.services.remove(service)
        return self.spawn(service.name, service.command, service.port, service.extra_env)

    def restart_service(self, service: Service) -> Service:
        """Stop a service, then start the same command on the same port (e.g. Shared under open pages)."""
        self.stop_service(service)
        restarted = self.respawn(service)
        self.wait_ready([restarted])
        return restarted

    def stop(self) -> None:
        for process in self.extra_processes:
            process.terminate()
            process.wait(STOP_TIMEOUT)
        # Workers first (they hand their tasks back), then Master, then Shared.
        for group in (self.worker_services, [s for s in self.services if s.name.startswith("master")],
                      [s for s in self.services if s.name == "shared"]):
            for service in group:
                service.signal(signal.SIGTERM)
            for service in group:
                self.stop_service(service)

    def __enter__(self) -> "LocalStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_exc) -> None:
        self.stop()
