"""A throwaway PostgreSQL cluster for the tests: the embedded PostgreSQL (salad.core.embedded) in a temporary
folder, on a free port, with fast and unsafe settings.

Set SALAD_TEST_DATABASE_URL to use an existing server instead (a database per test is created there).
"""

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
from salad.cli.stack import free_port
from salad.core.embedded import EmbeddedPostgres, EmbeddedPostgresError, bin_dir


def find_binary(name: str) -> str:
    """One of the embedded PostgreSQL's programs (postgres, psql, pg_dump...)."""
    return str(bin_dir() / name)


# Fast and unsafe: the tests need no durability. The benchmark passes `settings` to turn fsync back on.
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300"}


class PostgresCluster:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        """`settings` override TEST_SETTINGS (or add to them), e.g. {"fsync": "on"}."""
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="salad-pg-")), free_port(), self.settings)
        self.data = self.server.folder  # the data directory (postmaster.pid is there)

    def start(self) -> "PostgresCluster":
        """initdb, then start the server."""
        self.server.start()
        return self

    def start_server(self) -> None:
        """Start it again after `stop`, on the same port."""
        self.server.start_server()

    def stop(self, mode: str = "fast") -> None:
        self.server.stop(mode)

    def restart(self) -> None:
        self.stop()
        self.start_server()

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except EmbeddedPostgresError:
            pass
        shutil.rmtree(self.data, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return self.server.admin_url


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE (optionally from a migrated template) and return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
