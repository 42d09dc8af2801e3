"""Lease amnesty: reaper passes extend the running leases instead of reaping them only when no reaper ran on
any replica for over half a lease, never because one replica (re)started (issue 21)."""

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from pydantic import ValidationError
from salad.core.db import make_engine, sqlalchemy_url
from salad.core.settings import MasterSettings
from salad.master import tasks
from salad.master.background import Reaper
from salad.master.wakeup import QueueSignal, Waiting

LEASE = 4.0


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    yield engine
    engine.dispose()


def lease_two_tasks(engine) -> None:
    """Two tasks leased to worker w1 for a lease."""
    order = tasks.NewOrder(1, ["kiwi", "mango"], [5, 5], 0, datetime.now(UTC))
    tasks.split_orders(engine, [order], 3, [Waiting("w1", 2)], lease_seconds=LEASE, timeout_seconds=60)


def reaper_step(reaper: Reaper) -> None:
    asyncio.run(reaper.step())


def expire_leases(url: str, last_reaper_run_ago: float | None = None) -> None:
    """The running leases ran out a second ago; and, if given, the last reaper pass on any replica was that
    many seconds ago."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 s' WHERE status = 'running'")
        if last_reaper_run_ago is not None:
            conn.execute("UPDATE reaper_runs SET last_run = now() - make_interval(secs => %s)",
                         (last_reaper_run_ago,))


def task_states(url: str) -> list[tuple]:
    """Each task's status and worker, whether its lease is still good, and its failed attempts' errors."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT status, worker, lease_expires_at > now(),"
            " (SELECT array_agg(error) FROM task_failures WHERE task_failures.task_id = tasks.id)"
            " FROM tasks ORDER BY id").fetchall()


def test_a_replica_restarting_while_another_reaps_reaps_at_once(engine, postgres_url):
    lease_two_tasks(engine)
    running = Reaper(engine, QueueSignal(), LEASE)
    reaper_step(running)  # the first pass ever extends the leases (none before it)
    reaper_step(running)
    expire_leases(postgres_url)  # w1 died: its leases ran out while the other replica's reaper ran

    reaper_step(Reaper(engine, QueueSignal(), LEASE))  # a replica just (re)started

    assert task_states(postgres_url) == [("queued", None, None, ["lease expired on worker w1"])] * 2


def test_a_pass_after_every_reaper_was_silent_for_over_half_a_lease_extends_the_leases(engine, postgres_url):
    lease_two_tasks(engine)
    reaper = Reaper(engine, QueueSignal(), LEASE)
    reaper_step(reaper)
    expire_leases(postgres_url, last_reaper_run_ago=0.6 * LEASE)  # no reaper ran since: the database was away

    reaper_step(reaper)
    assert task_states(postgres_url) == [("running", "w1", True, None)] * 2, "w1 gets time to heartbeat"

    expire_leases(postgres_url, last_reaper_run_ago=0.4 * LEASE)  # w1 did not heartbeat: it is gone
    reaper_step(reaper)
    assert task_states(postgres_url) == [("queued", None, None, ["lease expired on worker w1"])] * 2


def test_master_refuses_a_reaper_slower_than_half_a_lease():
    """Every pass would find a silence of half a lease, and extend the leases instead of reaping them."""
    with pytest.raises(ValidationError, match=r"SALAD_REAPER_INTERVAL \(1 s\) must be below half of "
                                              r"SALAD_LEASE_SECONDS \(2 s\)"):
        MasterSettings(database_url="postgresql://salad@db/salad", lease_seconds=2, reaper_interval=1)
