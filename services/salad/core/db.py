"""Database engine and sessions: PostgreSQL through psycopg 3."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlmodel import Session, create_engine

PING_AFTER_IDLE = 0.5  # seconds a pooled connection may sit unused and still be taken without a ping
LAST_USED = "salad_last_used"  # key in a pooled connection's info: when it was last known alive
TASKS_CHANNEL = "salad_tasks"  # tasks were queued: wakes long-polling claims on every Master replica
ORDERS_CHANNEL = "salad_orders"  # an order was placed (its id): wakes one Master's intake, by turns
# A peer that vanishes without closing the connection (its node failed, the network split) is given up after
# KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT seconds of silence (25 s), not the kernel's defaults
# (two hours idle, about 15 minutes for a statement sent and never acknowledged, 2 for a new connection), all
# that time holding a thread of the service (and, on the server's side, a connection slot and an intake turn:
# wakeup.listen).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
T = TypeVar("T")


def utcnow() -> datetime:
    """Every timestamp is aware UTC (SQLModel stores them as `timestamptz` on PostgreSQL)."""
    return datetime.now(UTC)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` and `postgres://` URLs mean psycopg 3, the only PostgreSQL driver we ship; any other
    URL is refused (ValueError)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    scheme = url.partition("://")[0] if "://" in url else "no scheme"
    raise ValueError(f"a PostgreSQL URL is needed (postgresql://user:password@host:5432/salad), not {scheme}")


def libpq_url(url: str) -> str:
    """The URL psycopg.connect takes, from either form (LISTEN connections, scripts)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def dead_peer_seconds() -> int:
    return KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT


def keepalive_settings(server: bool = False) -> dict[str, str]:
    """The TCP settings that give a vanished peer up after dead_peer_seconds(): libpq's names for this end of
    a connection, PostgreSQL's (tcp_keepalives_*) for the server's."""
    prefix = "tcp_keepalives_" if server else "keepalives_"
    return {f"{prefix}idle": str(KEEPALIVE_IDLE), f"{prefix}interval": str(KEEPALIVE_INTERVAL),
            f"{prefix}count": str(KEEPALIVE_COUNT), "tcp_user_timeout": str(1000 * dead_peer_seconds())}


def dead_server_timeouts(url: str) -> dict[str, str]:
    """libpq's settings that give up on a server that vanished, or does not answer a new connection, after
    dead_peer_seconds() (tcp_user_timeout bounds the handshake too). The URL's own win: read as SQLAlchemy
    reads it, which also takes URLs that libpq's parser refuses (a password with a space)."""
    given = make_url(sqlalchemy_url(url)).query
    return {name: value for name, value in keepalive_settings().items() if name not in given}


def server_keepalives_sql() -> str:
    """The statement after which the server gives this connection's client up once it vanished (behind a
    pooler, the pooler: its own tcp_keep* settings do that): for a connection whose presence matters to the
    other replicas (wakeup.listen)."""
    return "SELECT " + ", ".join(f"set_config('{name}', '{value}', false)"
                                 for name, value in keepalive_settings(server=True).items())


def make_engine(url: str, pool_size: int = 10, planner: dict[str, str] | None = None) -> Engine:
    """An engine with a pool of `pool_size` (and as many overflow) connections. `planner` settings are set on
    each new connection, so no transaction spends a round trip setting them."""
    # LIFO: the connections in use stay few and warm (their backends and prepared statements), and the
    # rest idle long enough for a server or proxy timeout to close them; the ping then finds those closed.
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True,
                           connect_args=dead_server_timeouts(url))
    ping_when_idle(engine)
    if planner:

        @event.listens_for(engine, "connect")
        def _planner_settings(dbapi_conn, _record) -> None:
            for name, value in planner.items():
                dbapi_conn.execute(f"SET {name} = {value}")
            dbapi_conn.commit()  # a SET in a transaction rolled back (as the pool does on return) is undone

    return engine


def ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it has been idle PING_AFTER_IDLE or longer (as HikariCP
    does): `pool_pre_ping` pays a round trip on every checkout, on every task's way. A dead
    one found so renews the whole pool, as pre-ping does. One used this recently that died since fails its
    first statement instead (nothing is committed: a 503 to the caller, or a background loop's step retried,
    or the work run again by `again_if_disconnected`) and SQLAlchemy then renews the pool."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _last_seen_alive(_dbapi_conn, record) -> None:
        record.info[LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
        if time.monotonic() - record.info.get(LAST_USED, 0.0) < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise InvalidatePoolError(f"pooled connection is dead: {exc}") from exc  # the pool reconnects


def again_if_disconnected(work: Callable[[], T]) -> T:
    """Run `work`, and once more if its connection turned out dead (see `ping_when_idle`): SQLAlchemy has
    renewed the pool by then. Only for work that is safe to repeat even if its commit went through."""
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


def notify(session: Session, channel: str) -> None:
    """Wake the listeners of `channel` when this transaction commits."""
    session.execute(text(f"NOTIFY {channel}"))


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A connection whose every statement commits on its own: for a unit of work that is one statement,
    it saves the round trips of BEGIN and COMMIT."""
    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")  # set in place, reset at check-in


@contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """A read-only unit of work whose statements all see the same moment, so the parts of one answer agree.

    PostgreSQL reads each statement of a READ COMMITTED transaction afresh, so a page read in several queries
    could show a salad both open and completed; REPEATABLE READ gives one snapshot.
    """
    with transaction(engine) as session:  # set before the first statement, for this transaction only
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session
