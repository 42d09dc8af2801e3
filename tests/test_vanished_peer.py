"""A peer that vanishes without closing its connection, as when its node fails or the network splits: nothing
waits for the kernel's TCP defaults (hours idle, minutes for data sent). Each connection is black-holed with
iptables, which drops its packets both ways as a dead node would, while the process on each side lives on.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from salad.core import db
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import wakeup
from salad.master.wakeup import QueueSignal

from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="iptables needs root")
GIVE_UP_WITHIN = 20.0  # seconds; the settings below give up after 1 + 1 * 2


@pytest.fixture(autouse=True)
def quick_keepalives(monkeypatch):
    monkeypatch.setattr(db, "KEEPALIVE_IDLE", 1)
    monkeypatch.setattr(db, "KEEPALIVE_INTERVAL", 1)
    monkeypatch.setattr(db, "KEEPALIVE_COUNT", 2)


@contextmanager
def black_holed(port: int):
    """Drop every loopback packet from or to `port` (a connection's client port, or a server's), both ways."""
    iptables = shutil.which("iptables")
    assert iptables, "iptables is missing (Debian's iptables package; docker.io brings it)"
    rules = [["INPUT", "-i", "lo", "-p", "tcp", "--sport", str(port), "-j", "DROP"],
             ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "-j", "DROP"]]
    for rule in rules:
        subprocess.run([iptables, "-I", *rule], check=True)
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run([iptables, "-D", *rule], check=False)


def listeners(url: str) -> dict[int, int]:
    """The LISTEN connections' backends: pid -> client port."""
    with psycopg.connect(url, autocommit=True) as conn:
        return dict(conn.execute("SELECT pid, client_port FROM pg_stat_activity"
                                 " WHERE application_name = %s AND datname = current_database()",
                                 (wakeup.LISTENER,)).fetchall())


async def until(condition, what: str) -> None:
    await asyncio.to_thread(wait_until, condition, GIVE_UP_WITHIN, 0.2, what)


def test_a_vanished_masters_listener_is_dropped_and_the_master_listens_again(postgres_url):
    """PostgreSQL gives up on the listener of a Master whose node vanished (its intake turns then go to the
    other replicas), and that Master, cut off from PostgreSQL, listens again on a new connection."""

    async def scenario() -> None:
        listener = asyncio.create_task(wakeup.listen(postgres_url, QueueSignal(), asyncio.Event()))
        try:
            await until(lambda: listeners(postgres_url), "the Master listens")
            [(pid, port)] = listeners(postgres_url).items()
            with black_holed(port):
                await until(lambda: pid not in listeners(postgres_url), "PostgreSQL drops the vanished one")
                await until(lambda: listeners(postgres_url), "the Master listens again, on a new connection")
        finally:
            listener.cancel()

    asyncio.run(scenario())


def test_a_statement_on_a_vanished_database_fails_instead_of_holding_its_thread(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        with engine.connect() as connection, ThreadPoolExecutor(1) as pool:
            port = connection.execute(text("SELECT inet_client_port()")).scalar_one()
            with black_holed(port):
                statement = pool.submit(connection.execute, text("SELECT 1"))
                with pytest.raises(OperationalError):
                    statement.result(timeout=GIVE_UP_WITHIN)
    finally:
        engine.dispose()


def test_a_new_connection_to_a_silent_server_fails_too():
    with socket.socket() as silent:  # a port whose SYNs are dropped, as a vanished host's are
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg://salad@127.0.0.1:{port}/salad")
        try:
            with ThreadPoolExecutor(1) as pool, black_holed(port):
                started = time.monotonic()
                connecting = pool.submit(engine.connect)
                with pytest.raises(OperationalError):
                    connecting.result(timeout=GIVE_UP_WITHIN)
            assert time.monotonic() - started >= 2, "given up after the timeout, not refused"
        finally:
            engine.dispose()


def test_the_database_urls_own_timeouts_win(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url) + "?keepalives_idle=60")
    try:
        with engine.connect() as connection:
            settings = connection.connection.dbapi_connection.info.get_parameters()
    finally:
        engine.dispose()
    assert (settings["keepalives_idle"], settings["keepalives_count"], settings["tcp_user_timeout"]) == (
        "60", "2", "3000")
