"""The database engine on PostgreSQL: settings given for every connection stay set across transactions; a
pooled connection is pinged before use only after sitting idle."""

import time

import psycopg
import pytest
from salad.core import db
from salad.core.db import make_engine, sqlalchemy_url, transaction
from salad.master.tasks import PLANNER
from sqlalchemy.exc import OperationalError


def test_planner_settings_hold_on_every_pooled_connection_after_rollbacks(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=2, planner=PLANNER)
    try:
        seen = []
        for _ in range(3):
            with engine.connect() as first, engine.connect() as second:  # two connections of the pool
                for connection in (first, second):
                    seen.append(connection.exec_driver_sql("SHOW enable_bitmapscan").scalar())
                    connection.rollback()  # as the pool does when a connection is returned
        with transaction(engine) as session:
            seen.append(session.connection().exec_driver_sql("SHOW enable_bitmapscan").scalar())
    finally:
        engine.dispose()
    assert seen == ["off"] * 7


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def terminate(postgres_url: str, pid: int) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)  # the backend is gone before the pool hands its connection out again


def test_a_pooled_connection_is_pinged_only_after_sitting_idle_and_a_dead_one_is_replaced(postgres_url, monkeypatch):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=1)
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.3)
    try:
        first = backend_pid(engine)  # a new connection: alive, not pinged
        assert backend_pid(engine) == first and pings == [], "used again at once: no ping"

        time.sleep(0.4)
        assert backend_pid(engine) == first and len(pings) == 1, "idle past the window: pinged, still alive"

        terminate(postgres_url, first)
        time.sleep(0.4)
        second = backend_pid(engine)  # the ping finds it dead: a new connection, and no error
        assert second != first and len(pings) == 2
    finally:
        engine.dispose()


def test_a_connection_that_died_within_the_window_fails_once_then_the_pool_is_renewed(postgres_url, monkeypatch):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=1)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 60.0)
    try:
        first = backend_pid(engine)
        terminate(postgres_url, first)
        with pytest.raises(OperationalError):  # answered 503 by the services' error handler
            backend_pid(engine)
        assert backend_pid(engine) != first
    finally:
        engine.dispose()
