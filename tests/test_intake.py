"""The intake on PostgreSQL: Master splits orders taken from Shared (a retried intake creates nothing twice)
and confirms them to Shared."""

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from salad.contracts.work import Report
from salad.core import http
from salad.core.auth import bearer_header
from salad.core.db import make_engine, sqlalchemy_url
from salad.core.models import OrderStatus
from salad.core.settings import MasterSettings
from salad.master import tasks
from salad.master.background import Intake, OutboxRelay
from salad.master import wakeup
from salad.master.wakeup import QueueSignal
from salad.shared import orders
from salad.shared.metrics import REGISTRY
from salad.contracts.internal import OrderProgress, OrderReport
from salad.contracts.orders import FruitCounts

from tests.helpers import get_order, order as place


def new_order(order_id: int, fruits: list[str]) -> tasks.NewOrder:
    return tasks.NewOrder(order_id, fruits, [1] * len(fruits), 0, datetime.now(UTC))


def test_orders_split_again_after_a_retried_intake_are_skipped_and_the_new_ones_split(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        assert tasks.split_orders(engine, [new_order(1, ["apple", "kiwi"])], max_attempts=3).orders == 1
        # Shared hands order 1 out again (its intake lease expired) together with a new order 2.
        assert tasks.split_orders(engine, [new_order(1, ["apple", "kiwi"]), new_order(2, ["plum"])],
                                  max_attempts=3).orders == 1
    finally:
        engine.dispose()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT order_id, count(*) FROM tasks GROUP BY 1 ORDER BY 1").fetchall()
        salads = conn.execute("SELECT order_id, total, remaining FROM salads ORDER BY 1").fetchall()
    assert rows == [(1, 2), (2, 1)]
    assert salads == [(1, 2, 2), (2, 1, 1)]


def test_an_order_another_master_is_splitting_is_left_to_it(postgres_url):
    other = psycopg.connect(postgres_url)
    other.execute("INSERT INTO salads (order_id, total, remaining, status, ordered_at, version,"
                  " seed_collected) VALUES (1, 1, 1, 'in_progress', now(), 0, false)")  # its transaction is open
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        with ThreadPoolExecutor(1) as pool:
            both = [new_order(1, ["apple"]), new_order(2, ["plum"])]
            split = pool.submit(tasks.split_orders, engine, both, 3)
            time.sleep(0.5)
            assert not split.done(), "the split waits for the other Master's transaction"
            other.commit()
            assert split.result(timeout=10).orders == 1
    finally:
        other.close()
        engine.dispose()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT order_id, count(*) FROM tasks GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [(2, 1)], "order 1's tasks are the other Master's to insert"


def test_an_order_finished_before_master_confirmed_it_keeps_its_status_and_gets_accepted_at(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        order, _ = orders.create_order(engine, ["apple"])
        # Master confirms split orders a moment after the split: a quick order's completion may come first.
        orders.apply_reports(engine, [OrderReport(order_id=order.id, version=1, status=OrderStatus.COMPLETED,
                                                  finished_at=datetime.now(UTC), preparation_time=0.01)])
        assert orders.accept(engine, [order.id]) == {order.id: OrderStatus.COMPLETED}
        stored = orders.get_order(engine, order.id, master=None)  # only what Shared stores
    finally:
        engine.dispose()
    assert stored.status == OrderStatus.COMPLETED
    assert stored.accepted_at == stored.completed_at, "accepted no later than completed"


def test_a_report_of_an_order_master_has_not_confirmed_confirms_it(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        order, _ = orders.create_order(engine, ["apple"])
        assert [o.id for o in orders.claim_for_intake(engine, 10, lease_seconds=0)] == [order.id]
        orders.apply_reports(engine, [OrderReport(order_id=order.id, version=1, status=OrderStatus.COMPLETED,
                                                  finished_at=datetime.now(UTC), preparation_time=0.01)])
        stored = orders.get_order(engine, order.id, master=None)
        handed_out_again = orders.claim_for_intake(engine, 10, lease_seconds=30)  # its lease has run out
    finally:
        engine.dispose()
    assert (stored.status, stored.accepted_at) == (OrderStatus.COMPLETED, stored.completed_at)
    assert handed_out_again == []


def accept_calls(stack) -> float:
    """Master's confirmations Shared answered (POST /internal/v1/orders/accept)."""
    metrics = httpx.get(f"{stack.shared_url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("salad_http_requests_total{") and "/internal/v1/orders/accept" in line)


def test_an_order_whose_report_shared_took_is_left_out_of_masters_next_confirmation(postgres_url, make_stack):
    """A quick order's completion often reaches Shared before Master's next confirmation: the report confirms
    it, and the confirmation call carries only the orders still running. This test is the Master (its intake
    and relay), against a real Shared."""
    stack = make_stack(postgres_url, workers=0)
    stack.stop_service(stack.find("master"))
    quick, slow = place(stack, ["apple"])["id"], place(stack, ["kiwi"])["id"]
    settings = MasterSettings(database_url=postgres_url, shared_url=stack.shared_url)
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    headers = bearer_header(stack.tokens["master"])

    async def master() -> tuple[list[int], list[int]]:
        async with http.session(5, headers) as session:
            intake = Intake(engine, session, settings, QueueSignal())
            await intake.step()
            [task] = [t for t in tasks.claim(engine, "w1", 2, lease_seconds=30, timeout_seconds=60)
                      if t.order_id == quick]
            done = Report(id=task.id, lease_id=task.lease_id, outcome="succeeded", result="ok")
            tasks.exchange(engine, "w1", [done], 0, lease_seconds=30, timeout_seconds=60)
            with httpx.Client(base_url=stack.shared_url, headers=headers) as client:
                OutboxRelay(engine, client, on_reported=intake.reported).deliver_batch()
            to_confirm = list(intake.unconfirmed)
            await intake.accept_step()
            return to_confirm, list(intake.unconfirmed)

    try:
        to_confirm, left = asyncio.run(master())
    finally:
        engine.dispose()
    assert to_confirm == [slow], "the completed order was confirmed by its report"
    assert left == [] and accept_calls(stack) == 1
    shown = {order_id: get_order(stack, order_id) for order_id in (quick, slow)}
    assert shown[quick]["status"] == "completed"
    assert shown[quick]["accepted_at"] == shown[quick]["completed_at"]
    assert shown[slow]["status"] == "in_progress" and shown[slow]["accepted_at"] is not None


def test_reports_apply_in_version_order_each_once_and_unknown_orders_are_left_out(postgres_url):
    def failures_counted() -> float:
        return REGISTRY.get_sample_value("salad_orders_finished_total", {"status": "failed"})

    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        order, _ = orders.create_order(engine, ["apple"])
        orders.accept(engine, [order.id])
        failed = OrderReport(order_id=order.id, version=1, status=OrderStatus.FAILED,
                             finished_at=datetime.now(UTC), failure_reason="apple failed 3 times")
        resumed = OrderReport(order_id=order.id, version=2, status=OrderStatus.IN_PROGRESS)
        unknown = OrderReport(order_id=order.id + 1000, version=1, status=OrderStatus.COMPLETED)
        before = failures_counted()
        # Out of order in the batch: applied by version, so the order ends resumed, its failure counted once.
        assert orders.apply_reports(engine, [resumed, unknown, failed]) == {order.id: OrderStatus.IN_PROGRESS}
        assert orders.apply_reports(engine, [failed]) == {order.id: OrderStatus.IN_PROGRESS}, "old: a no-op"
        stored = orders.get_order(engine, order.id, master=None)  # only what Shared stores
    finally:
        engine.dispose()
    assert failures_counted() == before + 1
    assert (stored.status, stored.failure_reason) == (OrderStatus.IN_PROGRESS, None)


def test_a_report_and_counts_of_one_order_apply_together_and_older_ones_change_nothing(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    now = datetime.now(UTC)
    try:
        order, _ = orders.create_order(engine, ["apple", "kiwi"])
        orders.accept(engine, [order.id])
        completed = OrderReport(order_id=order.id, version=1, status=OrderStatus.COMPLETED, finished_at=now,
                                preparation_time=0.5)
        done = OrderProgress(order_id=order.id, counts=FruitCounts(done=2), counted_at=now)
        assert orders.apply_reports(engine, [completed], [done]) == {order.id: OrderStatus.COMPLETED}
        older = OrderProgress(order_id=order.id, counts=FruitCounts(running=2), counted_at=now - timedelta(seconds=1))
        assert orders.apply_reports(engine, [completed], [older]) == {order.id: OrderStatus.COMPLETED}
        [listed] = orders.list_orders(engine, None, 10, None)
    finally:
        engine.dispose()
    assert (listed.status, listed.counts, listed.preparation_time) == (OrderStatus.COMPLETED, FruitCounts(done=2), 0.5)


def test_each_order_wakes_one_replicas_intake_and_a_lone_replica_takes_every_turn(postgres_url, monkeypatch):
    """Two replicas listening take turns by order id; once one stops listening, the other wakes for all."""
    monkeypatch.setattr(wakeup, "TURNS_REFRESH", 0.2)
    engine = make_engine(sqlalchemy_url(postgres_url))

    async def woken_by(events: list[asyncio.Event]) -> list[int]:
        """Place an order, and say which replicas' intakes it woke."""
        for event in events:
            event.clear()
        await asyncio.to_thread(orders.create_order, engine, ["kiwi"])
        await asyncio.wait([asyncio.create_task(event.wait()) for event in events], timeout=5,
                           return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0.2)  # the other one's notification, if it comes, is as quick
        return [i for i, event in enumerate(events) if event.is_set()]

    async def scenario():
        turns, events = [wakeup.IntakeTurns(), wakeup.IntakeTurns()], [asyncio.Event(), asyncio.Event()]
        listeners = [asyncio.create_task(wakeup.listen(postgres_url, QueueSignal(), event, replica_turns))
                     for event, replica_turns in zip(events, turns, strict=True)]
        while any(t.replicas < 2 for t in turns):
            await asyncio.sleep(0.05)
        both = [await woken_by(events) for _ in range(6)]
        listeners[1].cancel()
        while turns[0].replicas > 1:
            await asyncio.sleep(0.05)
        alone = [await woken_by(events[:1]) for _ in range(4)]
        listeners[0].cancel()
        return both, alone

    try:
        both, alone = asyncio.run(scenario())
    finally:
        engine.dispose()
    assert all(len(woken) == 1 for woken in both), both
    assert {woken[0] for woken in both} == {0, 1}, "each replica takes turns"
    assert alone == [[0]] * 4


def test_an_order_notification_without_an_id_wakes_every_replica():
    """As an older Shared sends it during a rolling upgrade."""
    turns = wakeup.IntakeTurns()
    turns.replicas, turns.rank = 3, 1
    assert turns.mine("") and turns.mine("7") and not turns.mine("6")
    assert turns.mine("²"), "a stray payload wakes the intake; it does not stop the listener"


def test_a_replica_that_cannot_read_the_others_takes_every_turn(postgres_url):
    async def scenario() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            turns = wakeup.IntakeTurns()
            turns.replicas, turns.rank = 2, 1
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                await conn.execute("SELECT 1 / 0")  # the transaction is aborted: the read that follows fails
            await turns.refresh(conn)
            return turns.replicas, turns.rank

    assert asyncio.run(scenario()) == (1, 0)
