"""Whether a port on 127.0.0.1 is free for a service of the local stack, and if not, who holds it."""

import errno
import socket

import psutil

HOST = "127.0.0.1"  # where the local stack's services listen


class PortInUse(RuntimeError):
    """A port the stack needs is taken: the message names it and, when it can, the process holding it."""


def in_use(port: int, host: str = HOST) -> bool:
    """Whether binding `port` fails as it would for the service (SO_REUSEADDR, as uvicorn: a port whose
    last connections are in TIME_WAIT is free)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return False


def holder(port: int) -> str:
    """Who listens on `port`, as a phrase: "pid 1234 (python -m salad shared)", or what can be said."""
    try:
        listening = [c for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]
    except (psutil.Error, OSError):
        return "another process (this user may not see which)"
    if not listening:
        return "another process"
    pid = next((c.pid for c in listening if c.pid), None)
    if pid is None:
        return "a process of another user"
    try:
        command = " ".join(psutil.Process(pid).cmdline()) or psutil.Process(pid).name()
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({shorten(command)})"


def shorten(command: str, limit: int = 80) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[:limit - 1] + "…"


def check_free(ports: dict[str, tuple[int, str]]) -> None:
    """Raise PortInUse for the first port taken; `ports` maps a service to (its port, its option)."""
    for service, (port, option) in ports.items():
        if in_use(port):
            raise PortInUse(f"port {port} (for {service}) is in use by {holder(port)}: stop it, "
                            f"or give {service} another port with {option}")
