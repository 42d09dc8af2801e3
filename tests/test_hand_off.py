"""A split leases its first tasks straight to the claims waiting on this Master (PostgreSQL), and every claim it
takes is answered: with its tasks, with none (it claims again), or its tasks go back to the queue."""

import asyncio
import time
from datetime import UTC, datetime

import psycopg
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import tasks
from salad.master.wakeup import QueueSignal, Waiting


def new_order(order_id: int, times: list[int], ranks: list[int], priority: int = 0) -> tasks.NewOrder:
    return tasks.NewOrder(order_id, [f"fruit-{i}" for i in range(len(times))], times, priority,
                          datetime.now(UTC), hand_out_ranks=ranks)


def test_a_split_leases_its_first_tasks_in_hand_out_order_to_the_waiting_claims(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    takers = [Waiting("w1", 2), Waiting("w2", 3)]
    try:
        split = tasks.split_orders(engine, [new_order(1, [1, 2, 3, 4, 5, 6], [5, 4, 3, 2, 1, 0]),
                                            new_order(2, [1], [0], priority=1)],
                                   3, takers, lease_seconds=30, timeout_seconds=60)
        again = tasks.split_orders(engine, [new_order(1, [1], [0])], 3, [Waiting("w3", 4)], 30, 60)
    finally:
        engine.dispose()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT id, order_id, hand_out_rank, status, worker, attempts, claimed_at = created_at "
                            "FROM tasks ORDER BY id").fetchall()

    by_id = {row[0]: row for row in rows}
    handed = [[(by_id[t.id][1], by_id[t.id][2]) for t in leased] for leased in split.handed]
    # priority first, then the order's planned ranks: what each claim would have taken, in turn
    assert handed == [[(2, 0), (1, 0)], [(1, 1), (1, 2), (1, 3)]]
    leased = {row[0]: row for row in rows if row[3] == "running"}
    assert {t.id for ts in split.handed for t in ts} == set(leased)
    assert all(row[5] == 1 and row[6] for row in leased.values()), "leased by the split's own statement"
    assert [[by_id[t.id][4] for t in leased] for leased in split.handed] == [["w1"] * 2, ["w2"] * 3]
    queued = [row for row in rows if row[3] == "queued"]
    assert sorted(row[2] for row in queued) == [4, 5] and all(row[4] is None for row in queued)
    assert again.orders == 0 and again.handed == [[]], "an order split already hands out nothing"


def test_tasks_leased_to_a_claim_that_left_are_queued_again(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        split = tasks.split_orders(engine, [new_order(1, [1, 2], [0, 1])], 3, [Waiting("w1", 2)], 30, 60)
        tasks.release_all(engine, split.handed[0])
    finally:
        engine.dispose()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT status, attempts, worker, lease_id FROM tasks").fetchall()
    assert rows == [("queued", 0, None, None)] * 2


def test_a_taken_claim_gets_its_tasks_even_after_its_wait_ran_out():
    async def scenario():
        signal = QueueSignal()
        waiting = asyncio.create_task(signal.wait(0.05, "w1", 2))
        await asyncio.sleep(0)
        [(future, taken)] = signal.take()
        await asyncio.sleep(0.1)  # past the wait: the split is still running
        assert not waiting.done(), "a claim taken by a split waits for its answer"
        assert signal.hand(future, ["task"])
        return taken, await waiting

    assert asyncio.run(scenario()) == (Waiting("w1", 2), ["task"])


def test_waiting_claims_not_taken_are_woken_empty_handed_or_time_out():
    async def scenario():
        signal = QueueSignal()
        woken = asyncio.create_task(signal.wait(5, "w1", 1))
        await asyncio.sleep(0)
        signal.fire()
        timed_out = await signal.wait(0.01, "w2", 1)
        return await woken, timed_out, signal.take()

    assert asyncio.run(scenario()) == ([], [], [])


def test_a_claim_cancelled_after_a_split_took_it_refuses_its_tasks():
    async def scenario():
        signal = QueueSignal()
        waiting = asyncio.create_task(signal.wait(5, "w1", 1))
        await asyncio.sleep(0)
        [(future, _)] = signal.take()
        waiting.cancel()
        await asyncio.sleep(0)
        return signal.hand(future, ["task"])

    assert asyncio.run(scenario()) is False


def test_tasks_queued_while_a_claim_read_the_queue_wake_its_wait_at_once():
    async def scenario():
        signal = QueueSignal()
        read_at = signal.fired  # the claim reads the queue (empty) ...
        signal.fire()  # ... while a split queues tasks: nobody was waiting to be woken
        began = time.monotonic()
        woken = await signal.wait(5, "w1", 1, since=read_at)
        took = time.monotonic() - began
        began = time.monotonic()
        await signal.wait(0.05, "w1", 1, since=signal.fired)  # nothing queued since: it waits
        return woken, took, time.monotonic() - began

    woken, took, waited = asyncio.run(scenario())
    assert woken == [] and took < 0.04, "claims again at once, not at the next fallback poll"
    assert waited >= 0.04
