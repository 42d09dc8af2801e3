"""Failing orders (the reaper, or a worker's failures) while exchanges run: no deadlock.

An exchange statement locks the queued tasks it leases, then the tasks of its successes in id order, then its
orders' countdown rows in order id order. What fails orders takes its locks so that no cycle can form with
that: it does not wait on a queued task (an exchange is leasing it), it locks reported tasks in id order, and
countdown rows in order id order. Each test holds, in an open transaction, the locks an exchange would, lets
the other side run until it waits for one of them (or ends), then takes the lock that would close the cycle;
PostgreSQL reports a deadlock after `deadlock_timeout` (1 s) where one forms.
"""

import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg

from salad.contracts.work import Report
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import tasks

from tests.helpers import wait_until

LEASE = dict(lease_seconds=30, timeout_seconds=60)


def split(engine, *orders: tuple[int, list[str]]) -> None:
    """Orders whose tasks have one attempt each: the first failure fails the order."""
    for order_id, fruits in orders:
        new = tasks.NewOrder(order_id, fruits, [1] * len(fruits), 0, datetime.now(UTC))
        tasks.split_orders(engine, [new], max_attempts=1)


def waiting_or_done(url: str, work: Future) -> None:
    """Until `work` waits for a lock (its next step would close a cycle) or ends."""
    with psycopg.connect(url, autocommit=True) as conn:
        wait_until(lambda: work.done() or conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()").fetchone()[0], 10, interval=0.02, message="waiting or done")


def statuses(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return {
            "orders": dict(conn.execute("SELECT order_id, status FROM salads").fetchall()),
            "tasks": dict(conn.execute("SELECT fruit, status FROM tasks").fetchall()),
        }


def test_the_reaper_failing_an_order_does_not_deadlock_with_its_late_workers_exchange(postgres_url):
    """A worker reports its fruit just after its lease expired (its last attempt), in the exchange that
    leases the order's next fruit, while the reaper fails the order."""
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        tasks.reaper_pass(engine, 30)  # the first pass ever is an amnesty; this one records the reaper alive
        split(engine, (1, ["apple", "kiwi"]))
        [late] = tasks.claim(engine, "w1", 1, **LEASE)
        with psycopg.connect(postgres_url) as exchange, ThreadPoolExecutor(1) as pool:
            exchange.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                             (late.id,))
            exchange.commit()
            exchange.execute("UPDATE tasks SET status = 'running' WHERE status = 'queued'")  # leases the kiwi
            reaper = pool.submit(tasks.reaper_pass, engine, 30)
            waiting_or_done(postgres_url, reaper)
            exchange.execute("UPDATE tasks SET result = 'apple' WHERE id = %s", (late.id,))  # its success
            exchange.commit()
            assert reaper.result(timeout=10).reaped == 1
    finally:
        engine.dispose()
    assert statuses(postgres_url) == {"orders": {1: "failed"},
                                      "tasks": {"apple": "failed", "kiwi": "running"}}


def test_the_reaper_failing_two_orders_takes_their_countdown_rows_in_order_id_order(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        tasks.reaper_pass(engine, 30)
        split(engine, (1, ["apple"]), (2, ["kiwi"]))
        tasks.claim(engine, "w1", 2, **LEASE)
        with psycopg.connect(postgres_url) as exchange, ThreadPoolExecutor(1) as pool:
            # Order 2's lease expired first: the reaper meets its task first.
            exchange.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' * order_id")
            exchange.commit()
            exchange.execute("SELECT 1 FROM salads WHERE order_id = 1 FOR UPDATE")  # counting down order 1
            reaper = pool.submit(tasks.reaper_pass, engine, 30)
            waiting_or_done(postgres_url, reaper)
            exchange.execute("SELECT 1 FROM salads WHERE order_id = 2 FOR UPDATE")  # then order 2
            exchange.commit()
            assert reaper.result(timeout=10).reaped == 2
    finally:
        engine.dispose()
    assert statuses(postgres_url)["orders"] == {1: "failed", 2: "failed"}


def test_a_workers_failures_of_two_orders_take_their_countdown_rows_in_order_id_order(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        split(engine, (2, ["kiwi"]), (1, ["apple"]))  # order 2's task has the lower id
        leased = tasks.claim(engine, "w1", 2, **LEASE)
        failures = [Report(id=t.id, lease_id=t.lease_id, outcome="failed", error="dropped it")
                    for t in sorted(leased, key=lambda t: t.id)]  # in task id order: order 2's first
        with psycopg.connect(postgres_url) as exchange, ThreadPoolExecutor(1) as pool:
            exchange.execute("SELECT 1 FROM salads WHERE order_id = 1 FOR UPDATE")
            recording = pool.submit(tasks.record_one_by_one, engine, failures)
            waiting_or_done(postgres_url, recording)
            exchange.execute("SELECT 1 FROM salads WHERE order_id = 2 FOR UPDATE")
            exchange.commit()
            assert {ack.status for ack in recording.result(timeout=10).values()} == {"failed"}
    finally:
        engine.dispose()
    assert statuses(postgres_url)["orders"] == {1: "failed", 2: "failed"}


def test_a_stale_report_locks_its_tasks_in_id_order_as_an_exchange_does(postgres_url):
    """A worker whose leases expired reports fruits leased again since, while their new holder's exchange
    records them: both lock the tasks in id order."""
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        split(engine, (2, ["kiwi"]), (1, ["apple"]))  # order 2's task has the lower id
        leased = sorted(tasks.claim(engine, "w2", 2, **LEASE), key=lambda t: t.id)
        stale = [Report(id=t.id, lease_id=uuid.uuid4(), outcome="succeeded") for t in leased]
        with psycopg.connect(postgres_url) as exchange, ThreadPoolExecutor(1) as pool:
            exchange.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (leased[0].id,))
            recording = pool.submit(tasks.record_one_by_one, engine, stale)
            waiting_or_done(postgres_url, recording)
            exchange.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (leased[1].id,))
            exchange.commit()
            assert all(ack.lease_lost for ack in recording.result(timeout=10).values())
    finally:
        engine.dispose()
