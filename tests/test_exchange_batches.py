"""Exchanges and claims that reach a Master together run as one statement (master/exchanges.py), and each
request still gets its own answer: its results acknowledged, its own tasks, in hand-out order."""

import asyncio
import threading
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from salad.contracts.work import Report
from salad.core.db import make_engine, sqlalchemy_url
from salad.master import tasks
from salad.master.exchanges import Exchanges
from sqlalchemy.exc import DBAPIError

from tests.helpers import order, wait_final

WORKERS = 30


def batch_histogram(stack) -> tuple[float, float]:
    """salad_master_exchange_batch_requests: (statements run, requests they carried)."""
    text = httpx.get(f"{stack.master_url}/metrics", timeout=10).text
    values = {sample.name: sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.name.startswith("salad_master_exchange_batch_requests")}
    return values["salad_master_exchange_batch_requests_count"], values["salad_master_exchange_batch_requests_sum"]


def test_concurrent_exchanges_share_statements_and_each_gets_its_own_answer(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0)
    headers = {"Authorization": f"Bearer {stack.tokens['worker']}"}
    first = order(stack, [f"fruit-{i}" for i in range(WORKERS)])
    with httpx.Client(base_url=stack.master_url, timeout=30, headers=headers) as master:
        held = {}
        for i in range(WORKERS):
            answer = master.post("/v1/tasks/claim", json={"worker": f"w{i}", "max_tasks": 1, "wait": 5})
            held[f"w{i}"] = answer.json()["tasks"][0]
    second = order(stack, [f"fruit-{i}" for i in range(WORKERS)])
    statements_before, requests_before = batch_histogram(stack)

    answers, start = {}, threading.Barrier(WORKERS)

    def exchange(worker: str) -> None:
        task = held[worker]
        with httpx.Client(base_url=stack.master_url, timeout=30, headers=headers) as client:
            start.wait()
            answers[worker] = client.post("/v1/tasks/exchange", json={
                "worker": worker, "max_tasks": 1, "wait": 5, "request_id": str(uuid.uuid4()),
                "results": [{"id": task["id"], "lease_id": task["lease_id"], "result": "done"}]})

    threads = [threading.Thread(target=exchange, args=(worker,)) for worker in held]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statements, requests = batch_histogram(stack)
    assert all(answer.status_code == 200 for answer in answers.values())
    for worker, answer in answers.items():
        assert [(ack["id"], ack["status"]) for ack in answer.json()["results"]] == [(held[worker]["id"], "succeeded")]
    leased = [task for answer in answers.values() for task in answer.json()["tasks"]]
    assert len(leased) == WORKERS and len({task["id"] for task in leased}) == WORKERS, "each its own task"
    assert {task["order_id"] for task in leased} == {second["id"]}
    with psycopg.connect(postgres_url) as conn:
        owners = dict(conn.execute("SELECT id, worker FROM tasks WHERE order_id = %s", (second["id"],)).fetchall())
    assert all(owners[task["id"]] == worker for worker, answer in answers.items()
               for task in answer.json()["tasks"])
    assert wait_final(stack, first["id"], timeout=10)["status"] == "completed"
    assert requests - requests_before >= WORKERS
    assert statements - statements_before < requests - requests_before, "some requests shared a statement"


def new_order(order_id: int, fruits: int) -> tasks.NewOrder:
    return tasks.NewOrder(order_id, [f"fruit-{i}" for i in range(fruits)], list(range(1, fruits + 1)), 0,
                          datetime.now(UTC))


def test_a_request_the_statement_cannot_take_fails_alone(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    exchanges = Exchanges(engine, lease_seconds=30, timeout_seconds=60)
    tasks.split_orders(engine, [new_order(1, 3)], max_attempts=3)
    # an id out of PostgreSQL's range (the API refuses it before): the shared statement fails on it
    unfit = Report.model_construct(id=2 ** 70, lease_id=uuid.uuid4(), outcome="succeeded", result=None,
                                   error=None)

    async def together():
        return await asyncio.gather(exchanges.claim("w1", 1, str(uuid.uuid4())),
                                    exchanges.exchange("w2", [unfit], 1, str(uuid.uuid4())),
                                    exchanges.claim("w3", 1, str(uuid.uuid4())), return_exceptions=True)

    try:
        first, failed, third = asyncio.run(together())
    finally:
        engine.dispose()
    assert isinstance(failed, DBAPIError)
    assert len(first) == len(third) == 1 and first[0].id != third[0].id
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT worker, status FROM tasks ORDER BY execution_time DESC").fetchall()
    assert rows == [("w1", "running"), ("w3", "running"), (None, "queued")], "w2's claim leased nothing"


@pytest.mark.parametrize("requests", [1, 3])
def test_claims_together_take_tasks_in_hand_out_order_first_request_first(postgres_url, requests):
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    exchanges = Exchanges(engine, lease_seconds=30, timeout_seconds=60)
    tasks.split_orders(engine, [new_order(1, 7)], max_attempts=3)

    async def together():
        return await asyncio.gather(*(exchanges.claim(f"w{i}", 2, str(uuid.uuid4())) for i in range(requests)))

    try:
        leased = asyncio.run(together())
    finally:
        engine.dispose()
    # longest first (new_order's times are 1..7 s): each claim the next two
    assert [[task.execution_time for task in claim] for claim in leased] == [[7, 6], [5, 4], [3, 2]][:requests]


def test_a_success_under_a_stale_lease_is_answered_lease_lost_even_beside_the_current_one(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url), planner=tasks.PLANNER)
    exchanges = Exchanges(engine, lease_seconds=30, timeout_seconds=60)
    tasks.split_orders(engine, [new_order(1, 1)], max_attempts=3)
    [stale] = tasks.claim(engine, "w1", 1, lease_seconds=30, timeout_seconds=60)
    current = uuid.uuid4()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # w1's lease ran out; w2 leased the task since
        conn.execute("UPDATE tasks SET lease_id = %s, worker = 'w2', attempts = 2", (str(current),))

    def success(lease) -> Report:
        return Report(id=stale.id, lease_id=lease, outcome="succeeded", result="ok")

    async def together():  # run in one statement (see the test above)
        return await asyncio.gather(exchanges.exchange("w1", [success(stale.lease_id)], 0, str(uuid.uuid4())),
                                    exchanges.exchange("w2", [success(current)], 0, str(uuid.uuid4())))

    try:
        (late, _), (recorded, _) = asyncio.run(together())
    finally:
        engine.dispose()
    assert [(ack.status, ack.lease_lost) for ack in recorded] == [("succeeded", False)]
    assert [ack.lease_lost for ack in late] == [True], "w1 must drop its result: the task is w2's"
