"""`salad migrate`, and whether a database's schema is the one this code needs (readiness)."""

import logging
import time
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from salad.core.db import make_engine, sqlalchemy_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Key of the PostgreSQL advisory lock held while migrating: every Shared and Master pod migrates as it
# starts, and two that start together must not both run the same revision.
MIGRATION_LOCK = 0x5A1AD
WAIT_STEP_SECONDS = 1.0

log = logging.getLogger(__name__)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


@cache
def known_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision this code ships, its head revisions): read from the migration scripts once."""
    script = ScriptDirectory.from_config(alembic_config(""))
    return frozenset(r.revision for r in script.walk_revisions()), frozenset(script.get_heads())


def upgrade(database_url: str, revision: str = "head", wait_seconds: float = 0) -> None:
    """Bring the schema to `revision`, one migrator at a time. A database that does not answer yet (a
    bundled PostgreSQL still starting) is tried again every second for up to `wait_seconds`."""
    engine = make_engine(sqlalchemy_url(database_url), pool_size=1)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                with engine.begin() as connection:
                    # Held until this transaction ends: a second migrator waits here, then has nothing to do.
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                    config = alembic_config(database_url)
                    config.attributes["connection"] = connection
                    command.upgrade(config, revision)
                return
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("waiting for the database: %s", str(exc.orig).strip().splitlines()[0])
                time.sleep(WAIT_STEP_SECONDS)
    finally:
        engine.dispose()


def schema_is_current(engine: Engine) -> bool:
    """True when the database answers and its schema is this code's head revision, or a newer one that a
    later release migrated to (old pods keep serving through a rolling upgrade: migrations only add).
    False when it is unreachable, empty or behind: the service cannot serve, `salad migrate` is due."""
    try:
        with engine.connect() as conn:
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:  # unreachable, or no alembic_version table yet
        return False
    known, heads = known_revisions()
    return current == heads or bool(current) and not current & known
