"""The database engine on PostgreSQL: settings given for every connection stay set across transactions; a
pooled connection is pinged before use only after sitting idle; work safe to repeat outlives a dead one."""

import time
from contextlib import ExitStack

import psycopg
import pytest
from salad.core import db
from salad.core.db import make_engine, sqlalchemy_url, transaction, utcnow
from salad.master.tasks import PLANNER, NewOrder, split_orders
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


def backend_pids(engine, count: int) -> set[int]:
    """The server processes behind `count` pooled connections checked out at once."""
    with ExitStack() as stack:
        connections = [stack.enter_context(engine.connect()) for _ in range(count)]
        return {c.exec_driver_sql("SELECT pg_backend_pid()").scalar() for c in connections}


def terminate(postgres_url: str, pids: set[int]) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # returns once the backend is gone


def test_a_pooled_connection_is_pinged_only_after_sitting_idle_and_a_dead_one_renews_the_pool(
        postgres_url, monkeypatch):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=2)
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 1.0)
    try:
        first = backend_pids(engine, 2)  # two new connections: alive, not pinged
        assert backend_pids(engine, 1) < first and pings == [], "used again at once: no ping"

        time.sleep(1.2)
        assert backend_pids(engine, 1) < first and len(pings) == 1, "idle past the window: pinged, still alive"

        terminate(postgres_url, first)
        time.sleep(1.2)
        # Both idle past the window, both dead: the first ping fails and renews the whole pool, so the other
        # connection is replaced without a ping of its own; no error reaches the caller.
        assert backend_pids(engine, 2).isdisjoint(first) and len(pings) == 2
    finally:
        engine.dispose()


def test_a_connection_that_died_within_the_window_fails_once_then_the_pool_is_renewed(postgres_url, monkeypatch):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=2)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 60.0)
    try:
        first = backend_pids(engine, 2)
        terminate(postgres_url, first)
        with pytest.raises(OperationalError):  # answered 503 by the services' error handler
            backend_pids(engine, 1)
        assert backend_pids(engine, 2).isdisjoint(first), "the other dead connection was replaced too"
    finally:
        engine.dispose()


def test_an_intake_split_on_a_connection_that_died_within_the_window_is_run_again(postgres_url, monkeypatch):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=2)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 60.0)
    order = NewOrder(order_id=1, fruits=["apple", "kiwi"], execution_times=[3, 5], priority=0,
                     ordered_at=utcnow())
    try:
        terminate(postgres_url, backend_pids(engine, 2))

        # without the second run the orders, leased to this Master by Shared, would wait out that lease
        assert split_orders(engine, [order], max_attempts=3).orders == 1
        assert split_orders(engine, [order], max_attempts=3).orders == 0, "split once"
        with engine.connect() as connection:
            fruits = connection.exec_driver_sql("SELECT fruit FROM tasks ORDER BY position").scalars().all()
        assert fruits == ["apple", "kiwi"]
    finally:
        engine.dispose()
