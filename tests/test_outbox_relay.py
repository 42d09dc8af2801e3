"""Master's reports to Shared (master/background.py, OutboxRelay): a report Shared did not take is sent again
after a backoff, counts that did not reach it are flagged again, and nothing is lost while Shared is away."""

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import psycopg
from sqlalchemy import event
from salad.cli.stack import free_port
from salad.contracts.work import Report
from salad.core.auth import bearer_header
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import tasks
from salad.master.background import ACKS_HELD_MAX, OUTBOX_BATCH, SENDING_SECONDS, OutboxRelay
from salad.master.exchanges import Exchanges
from salad.shared import orders

from tests.helpers import get_order, order, wait_until


def outbox_row(postgres_url: str, order_id: int) -> tuple:
    with psycopg.connect(postgres_url) as conn:
        return conn.execute(
            "SELECT o.attempts, o.delivered_at IS NOT NULL, extract(epoch FROM o.next_attempt_at - now()),"
            " s.progress_due FROM outbox o JOIN salads s USING (order_id) WHERE o.order_id = %s",
            (order_id,)).fetchone()


def progress_due(postgres_url: str, order_id: int) -> bool:
    with psycopg.connect(postgres_url) as conn:
        return conn.execute("SELECT progress_due FROM salads WHERE order_id = %s", (order_id,)).fetchone()[0]


def test_a_report_shared_did_not_take_is_sent_again_after_a_backoff(postgres_url, make_stack):
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    try:
        fruits = ["apple", "kiwi"]
        placed, _ = orders.create_order(engine, fruits)  # as Shared stores it
        tasks.split_orders(engine, [tasks.NewOrder(placed.id, fruits, [1, 1], 0, datetime.now(UTC))], 3)
        done = [Report(id=task.id, lease_id=task.lease_id, outcome="succeeded", result="ok")
                for task in tasks.claim(engine, "w1", 2, lease_seconds=30, timeout_seconds=60)]
        with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=2) as nowhere:
            relay = OutboxRelay(engine, nowhere)
            tasks.exchange(engine, "w1", done[:1], 0, lease_seconds=30, timeout_seconds=60)  # counts changed
            relay.deliver_batch()
            no_report = outbox_row(postgres_url, placed.id) is None
            flagged_again = no_report and progress_due(postgres_url, placed.id)
            tasks.exchange(engine, "w1", done[1:], 0, lease_seconds=30, timeout_seconds=60)  # completes it
            relay.deliver_batch()
            attempts, delivered, due_in, flagged = outbox_row(postgres_url, placed.id)
            relay.deliver_batch()  # before the backoff ran out: not sent again
    finally:
        engine.dispose()
    assert flagged_again, "counts that did not reach Shared are flagged again"
    assert (attempts, delivered) == (1, False), "the completion's report tried once"
    assert not flagged, "a completed order's counts are not reported: Shared shows its fruits all done"
    assert 0.5 < due_in <= 1.0, "the first retry after a second"
    assert outbox_row(postgres_url, placed.id)[0] == 1

    stack = make_stack(postgres_url, workers=0)  # Shared is there now, with a Master whose relay sends
    wait_until(lambda: outbox_row(postgres_url, placed.id)[1], timeout=10, message="report delivered")
    shown = get_order(stack, placed.id)
    assert shown["status"] == "completed" and shown["counts"]["done"] == 2


def test_a_finished_order_reaches_shared_at_once_not_at_the_relays_next_pass(postgres_url, make_stack):
    # The relay's passes are a minute apart here: only the report's own notification can bring it in time.
    stack = make_stack(postgres_url, workers=1, time_scale=0, env={"SALAD_OUTBOX_INTERVAL": "60"})
    placed = order(stack, ["apple", "kiwi"])
    shown = wait_until(lambda: (o := get_order(stack, placed["id"]))["status"] == "completed" and o,
                       timeout=10, message="completion shown by Shared")
    assert shown["counts"] == {"queued": 0, "running": 0, "done": 2, "failed": 0}


def test_a_master_stopping_records_the_reports_shared_just_acknowledged(postgres_url, make_stack):
    # A pass leaves what Shared acknowledged to the next read of the outbox, 5 s off here (ACKS_HELD_MAX).
    stack = make_stack(postgres_url, workers=1, time_scale=0, env={"SALAD_OUTBOX_INTERVAL": "5"})
    placed = order(stack, ["apple"])
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "completed", timeout=10,
               message="completion shown by Shared")
    for service in (*stack.worker_services, stack.find("master")):  # no long-poll holds Master's stop open
        stack.stop_service(service)
    attempts, delivered, _, _ = outbox_row(postgres_url, placed["id"])
    assert (attempts, delivered) == (0, True), "delivered at the first attempt, not left to be sent again"



def test_a_completion_goes_to_shared_from_its_relays_hand_and_no_other_relay_takes_it(postgres_url,
                                                                                      make_stack):
    """An exchange that completes an order hands its report to its replica's relay, whose pass sends it as it
    is, with no statement. In the outbox it is due to other relays only after SENDING_SECONDS, so none sends
    it meanwhile; the relay's next read of the outbox records that Shared acknowledged it."""
    stack = make_stack(postgres_url, workers=0)
    stack.stop_service(stack.find("master"))  # this test is the Master: its exchanges and two relays
    placed = order(stack, ["apple"])
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        tasks.split_orders(engine, [tasks.NewOrder(placed["id"], ["apple"], [1], 0, datetime.now(UTC))], 3)
        [task] = tasks.claim(engine, "w1", 1, lease_seconds=30, timeout_seconds=60)
        headers = bearer_header(stack.tokens["master"])
        with httpx.Client(base_url=stack.shared_url, headers=headers) as client:
            relay, other = (OutboxRelay(engine, client, interval=ACKS_HELD_MAX) for _ in range(2))
            relay.deliver_batch()  # reads the outbox: nothing to send yet
            exchanges = Exchanges(engine, lease_seconds=30, timeout_seconds=60)
            exchanges.report_to(relay.hand, SENDING_SECONDS)
            done = Report(id=task.id, lease_id=task.lease_id, outcome="succeeded", result="ok")
            asyncio.run(exchanges.exchange("w1", [done], 0, lease=str(uuid4())))
            other.deliver_batch()
            shown_before = get_order(stack, placed["id"])["status"]
            before = len(statements)
            relay.deliver_batch()  # woken by the completion, within seconds of its last read of the outbox
            statements_run = len(statements) - before
            shown = get_order(stack, placed["id"])["status"]
            _, delivered_then, due_in, _ = outbox_row(postgres_url, placed["id"])
            relay.deliver_batch()  # nothing in hand: reads the outbox, recording what Shared acknowledged
    finally:
        engine.dispose()
    assert shown_before == "pending", "the other relay sent nothing"
    assert shown == "completed" and statements_run == 0 and not delivered_then
    assert SENDING_SECONDS - 5 < due_in <= SENDING_SECONDS, "due to other relays only if this one stops"
    assert outbox_row(postgres_url, placed["id"])[:2] == (0, True), "delivered, at the first attempt"


def test_a_relay_behind_reads_the_outbox_again_at_once_whatever_it_holds_in_hand(postgres_url, make_stack):
    """A read of the outbox that filled a batch is followed at once by another, even when a completion woke
    the pass with reports in hand: else a relay that fell behind (Shared away a while) caught up a batch per
    SALAD_OUTBOX_INTERVAL."""
    stack = make_stack(postgres_url, workers=0)
    stack.stop_service(stack.find("master"))  # this test is the Master
    placed = [order(stack, ["apple"])["id"] for _ in range(OUTBOX_BATCH + 2)]
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    try:
        now = datetime.now(UTC)
        tasks.split_orders(engine, [tasks.NewOrder(o, ["apple"], [1], 0, now) for o in placed], 3)
        done = [Report(id=t.id, lease_id=t.lease_id, outcome="succeeded", result="ok")
                for t in tasks.claim(engine, "w1", len(placed), lease_seconds=30, timeout_seconds=60)]
        tasks.exchange(engine, "w1", done[:-1], 0, lease_seconds=30, timeout_seconds=60)  # due in the outbox
        headers = bearer_header(stack.tokens["master"])
        with httpx.Client(base_url=stack.shared_url, headers=headers) as client:
            relay = OutboxRelay(engine, client, interval=60)
            behind = relay.deliver_batch()  # a full batch of the due reports
            exchanges = Exchanges(engine, lease_seconds=30, timeout_seconds=60)
            exchanges.report_to(relay.hand, SENDING_SECONDS)
            asyncio.run(exchanges.exchange("w1", done[-1:], 0, lease=str(uuid4())))  # one in hand
            relay.deliver_batch()
    finally:
        engine.dispose()
    assert behind, "the batch was full: the relay passes again at once"
    assert [get_order(stack, order_id)["status"] for order_id in placed] == ["completed"] * len(placed)
