"""`salad up` as a supervisor: a service of the local stack that exits is reported by name, with its exit code
or signal, and started again (same name, same port) after a backoff while the others keep serving."""

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from salad.cli.common import duration
from salad.cli.stack import LocalStack, Service

TICK = 0.25  # seconds between looks at the processes
LOG_LINES = 5  # of the log of a service that exited with an error, shown with the news


@dataclass(frozen=True)
class Backoff:
    """Seconds before restarting a service that exited: `first`, doubling at each failure in a row up to
    `cap`; a service that served `healthy_after` seconds before it exited starts from `first` again."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    healthy_after: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.first * self.factor ** (failures - 1))


def how_it_ended(code: int) -> str:
    """A Popen return code in words: "exited with code 1", "was killed by SIGKILL"."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


@dataclass
class Watched:
    """A supervised service and its restart record."""

    service: Service
    started: float  # time.monotonic() of its last start
    failures: int = 0  # exits in a row, each within Backoff.healthy_after of its start
    restart_at: float | None = None  # set while it waits for its restart
    serving: bool = True  # False from a restart until it answers /readyz


class Supervisor:
    """Watches every service of `stack`: `warn` tells of an exit, `say` of a restart and of a service serving
    again; `on_restart` follows each restart."""

    def __init__(self, stack: LocalStack, say: Callable[[str], None],
                 warn: Callable[[str], None] | None = None, on_restart: Callable[[], None] = lambda: None,
                 backoff: Backoff = Backoff()) -> None:
        self.stack, self.say, self.warn = stack, say, warn or say
        self.on_restart, self.backoff = on_restart, backoff
        self.watched = [Watched(service, time.monotonic()) for service in stack.services]

    def run(self) -> None:
        """Supervise until KeyboardInterrupt (Ctrl-C, or SIGTERM made one)."""
        while True:
            self.check(time.monotonic())
            time.sleep(TICK)

    def check(self, now: float) -> None:
        for watched in self.watched:
            code = watched.service.process.poll()
            if watched.restart_at is None and code is not None:
                self.exited(watched, code, now)
            elif watched.restart_at is not None and now >= watched.restart_at:
                self.restart(watched, now)
            elif not watched.serving and code is None and ready(watched.service):
                watched.serving = True
                self.say(f"{watched.service.name} is serving again")

    def exited(self, watched: Watched, code: int, now: float) -> None:
        service, served = watched.service, now - watched.started
        watched.failures = 1 if served >= self.backoff.healthy_after else watched.failures + 1
        delay = self.backoff.delay(watched.failures)
        watched.restart_at = now + delay
        news = (f"{service.name} (pid {service.process.pid}) {how_it_ended(code)} after {duration(served)}; "
                f"restarting it in {delay:g} s")
        if watched.failures > 1:
            news += f" ({watched.failures} failures in a row)"
        if code > 0 and service.log_path is not None:
            news += f"; its log {service.log_path} ends:\n{service.log_tail(LOG_LINES)}"
        self.warn(news)

    def restart(self, watched: Watched, now: float) -> None:
        watched.service = self.stack.respawn(watched.service)
        watched.started, watched.restart_at, watched.serving = now, None, False
        self.say(f"{watched.service.name} restarted (pid {watched.service.process.pid})")
        self.on_restart()


def ready(service: Service) -> bool:
    try:
        return httpx.get(f"{service.url}/readyz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
