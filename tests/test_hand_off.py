"""A split leases its first tasks straight to the claims waiting on this Master (PostgreSQL), and every claim it
takes is answered: with its tasks, with none (it claims again), or its tasks go back to the queue."""

import asyncio
import time
from datetime import UTC, datetime

import psycopg
from salad.core.db import TASKS_CHANNEL, make_engine, sqlalchemy_url
from salad.master import tasks
from salad.master.wakeup import WAKE_BATCH, WAKE_MORE, QueueSignal, Waiting


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


def test_queued_tasks_wake_a_few_waiting_claims_not_all():
    async def scenario():
        signal = QueueSignal()
        waiting = [asyncio.create_task(signal.wait(5, f"w{i}", 1)) for i in range(WAKE_BATCH + 3)]
        await asyncio.sleep(0)
        signal.fire()
        await asyncio.sleep(0)
        woken = [w for w in waiting if w.done()]
        left = signal.waiting
        signal.wake(len(waiting))
        await asyncio.gather(*waiting)
        return len(woken), left

    assert asyncio.run(scenario()) == (WAKE_BATCH, 3)


def test_a_woken_claim_that_fills_up_wakes_more_and_one_left_short_marks_the_queue_empty():
    async def scenario():
        signal = QueueSignal()
        waiting = [asyncio.create_task(signal.wait(5, f"w{i}", 1)) for i in range(5)]
        await asyncio.sleep(0)
        read_at = signal.fired
        signal.claimed(1, 1, read_at, woken=True)  # full: more may be queued
        await asyncio.sleep(0)
        more = sum(w.done() for w in waiting)
        signal.claimed(0, 1, read_at, woken=True)  # short: the queue was empty then
        empty = signal.known_empty(read_at)
        signal.fire()  # tasks queued since: no longer known empty
        stale = signal.known_empty(read_at) or signal.known_empty(signal.fired)
        signal.wake(5)
        await asyncio.gather(*waiting)
        return more, empty, stale

    assert asyncio.run(scenario()) == (WAKE_MORE, True, False)


def test_a_split_takes_only_the_waiting_claims_its_fruits_fill():
    async def scenario():
        signal = QueueSignal()
        waiting = [asyncio.create_task(signal.wait(5, f"w{i}", 2)) for i in range(4)]
        await asyncio.sleep(0)
        taken = signal.take(3)
        for future, _ in taken:
            signal.hand(future, [])
        left = signal.waiting
        signal.wake(4)
        await asyncio.gather(*waiting)
        return [w.worker for _, w in taken], left

    assert asyncio.run(scenario()) == (["w0", "w1"], 2)


def test_a_claim_whose_worker_hung_up_stops_waiting_at_once():
    async def scenario():
        signal = QueueSignal()
        gone = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(signal.wait(5, "w1", 1, gone=gone))
        await asyncio.sleep(0)
        gone.set_result({"type": "http.disconnect"})
        return await asyncio.wait_for(waiting, 1), signal.take()

    assert asyncio.run(scenario()) == ([], [])


def test_a_split_notifies_the_listeners_only_of_tasks_it_queued(postgres_url):
    """Each listening replica spends a transaction receiving a notification: a split that leased every task
    to the claims waiting sends none."""
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        with psycopg.connect(postgres_url, autocommit=True) as listener:
            listener.execute(f"LISTEN {TASKS_CHANNEL}")
            tasks.split_orders(engine, [new_order(1, [1, 2], [0, 1])], 3, [Waiting("w1", 2)], 30, 60)
            assert list(listener.notifies(timeout=0.5)) == []
            tasks.split_orders(engine, [new_order(2, [1, 2], [0, 1])], 3, [Waiting("w1", 1)], 30, 60)
            assert [note.payload for note in listener.notifies(timeout=0.5)] == ["queued"]
    finally:
        engine.dispose()
