"""Master's worker API over real HTTP: leases, stale results, hand-backs, expiry and failure."""

import http.client
import resource
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from salad.core.settings import WorkerSettings
from salad.master.hand_out import Capacity, longest_first, plan
from salad.master.wakeup import FALLBACK_POLL

from tests.helpers import get_order, order, wait_final, wait_until

QUICK_LEASES = {"SALAD_LEASE_SECONDS": "1", "SALAD_REAPER_INTERVAL": "0.1", "SALAD_MAX_ATTEMPTS": "2",
                "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}


@pytest.fixture
def stack(make_stack, postgres_url):
    return make_stack(postgres_url, workers=0, env=QUICK_LEASES)


def worker_client(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.master_url, timeout=30,
                        headers={"Authorization": f"Bearer {stack.tokens['worker']}"})


@pytest.fixture
def master(stack):
    with worker_client(stack) as client:
        yield client


def claim(master, worker="w1", max_tasks=1, wait=5.0) -> list[dict]:
    response = master.post("/v1/tasks/claim", json={"worker": worker, "max_tasks": max_tasks, "wait": wait})
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def test_a_claim_leases_longest_fruits_first_and_a_result_completes_the_order(stack, master):
    placed = order(stack, ["apple", "banana", "kiwi"])

    tasks = claim(master, max_tasks=10)

    assert len(tasks) == 3
    assert [t["execution_time"] for t in tasks] == sorted((t["execution_time"] for t in tasks), reverse=True)
    for task in tasks:
        response = master.post(f"/v1/tasks/{task['id']}/result", json={"lease_id": task["lease_id"], "result": "ok"})
        assert response.status_code == 200 and response.json()["status"] == "succeeded"
    final = wait_final(stack, placed["id"], timeout=10)
    assert final["status"] == "completed"
    assert final["preparation_time"] > 0


def test_an_order_is_handed_out_in_the_order_planned_for_the_live_workers(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, env={"SALAD_RANDOM_SEED": "3"})
    workers = [Capacity(slots=1, prefetch=1)] * 3
    with worker_client(stack) as master:
        for name in ("w1", "w2", "w3"):
            assert master.put(f"/v1/workers/{name}", json={"slots": 1, "prefetch": 1}).status_code == 204
        order(stack, [f"fruit-{i}" for i in range(10)])
        handed_out = [claim(master, wait=10)[0]["id"] for _ in range(10)]  # one at a time: the queue's order
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute("SELECT id, position, execution_time FROM tasks ORDER BY position").fetchall()

    times = [seconds for _, _, seconds in rows]
    planned = sorted(range(len(times)), key=plan(times, workers).__getitem__)
    assert planned != longest_first(times), "this order's plan differs from longest first"
    position_of = {task_id: position for task_id, position, _ in rows}
    assert [position_of[task_id] for task_id in handed_out] == planned


def test_claims_waiting_when_an_order_is_split_get_its_first_tasks_leased_by_the_split_itself(stack, master):
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(claim, master, name, 2, 20) for name in ("w1", "w2", "w3")]
        # all three wait; the order lands mid-way through their wait, away from the moment each re-registers
        # (wakeup.FALLBACK_POLL, 1 s): a claim re-checking the queue then is not among the split's takers
        time.sleep(FALLBACK_POLL / 2)
        order(stack, [f"fruit-{i}" for i in range(7)])
        handed = [claimed.result(timeout=25) for claimed in waiting]
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute("SELECT id, hand_out_rank, status, claimed_at = created_at FROM tasks").fetchall()

    rank = {task_id: rank for task_id, rank, _, _ in rows}
    assert sorted([rank[t["id"]] for t in tasks] for tasks in handed) == [[0, 1], [2, 3], [4, 5]]
    assert all(split_time for _, _, status, split_time in rows if status == "running"), \
        "leased in the split's statement, not by claims run after it"
    assert [r for _, r, status, _ in rows if status == "queued"] == [6]


def test_a_long_poll_is_answered_as_soon_as_a_task_is_queued(stack, master):
    import threading

    results = {}
    waiter = threading.Thread(target=lambda: results.setdefault("tasks", claim(master, wait=20)))
    waiter.start()
    time.sleep(0.5)
    started = time.monotonic()
    order(stack, ["apple"])
    waiter.join(25)

    assert len(results["tasks"]) == 1
    assert time.monotonic() - started < 5, "answered on the order, not at the end of the wait"


def exchange(master, results: list[dict], max_tasks=0, worker="w1", **retryable) -> dict:
    response = master.post("/v1/tasks/exchange", json={"worker": worker, "results": results, "max_tasks": max_tasks,
                                                       **retryable})
    assert response.status_code == 200, response.text
    return response.json()


def task_attempts(stack) -> dict[int, int]:
    with psycopg.connect(stack.database_url) as conn:
        return dict(conn.execute("SELECT id, attempts FROM tasks").fetchall())


def test_an_exchange_sent_again_gets_the_tasks_its_lost_answer_leased_and_spends_no_attempt(make_stack,
                                                                                             postgres_url):
    stack = make_stack(postgres_url, workers=0, env={"SALAD_INTAKE_INTERVAL": "0.1"})  # leases outlast the test
    order(stack, ["apple", "banana", "kiwi", "mango", "pear"])
    with worker_client(stack) as master:
        [done] = claim(master)
        request = dict(request_id=str(uuid.uuid4()), max_tasks=2,
                       results=[{"id": done["id"], "lease_id": done["lease_id"], "result": "ok"}])

        lost = exchange(master, **request)  # Master committed it; the worker never got the answer
        again = exchange(master, **request, retry=True)
        other = exchange(master, worker="w2", request_id=request["request_id"], retry=True, results=[], max_tasks=2)

    assert [(a["status"], a["lease_lost"]) for a in again["results"]] == [("succeeded", False)]
    assert len(lost["tasks"]) == 2
    assert [(t["id"], t["lease_id"], t["attempt"]) for t in again["tasks"]] == \
        [(t["id"], request["request_id"], 1) for t in lost["tasks"]], "the same tasks, leases and attempts"
    assert min(t["lease_expires_at"] for t in again["tasks"]) > max(t["lease_expires_at"] for t in lost["tasks"])
    assert len(other["tasks"]) == 2, "another worker naming that request id leases anew"
    assert {t["id"] for t in lost["tasks"]}.isdisjoint(t["id"] for t in other["tasks"])
    assert sorted(task_attempts(stack).values()) == [1] * 5, "no task leased twice, none lost an attempt"


def test_a_failure_sent_again_in_a_retried_exchange_is_answered_as_recorded(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, env={"SALAD_INTAKE_INTERVAL": "0.1"})  # leases outlast the test
    order(stack, ["apple"])
    with worker_client(stack) as master:
        [task] = claim(master)
        request = dict(request_id=str(uuid.uuid4()), max_tasks=1, results=[
            {"id": task["id"], "lease_id": task["lease_id"], "outcome": "failed", "error": "dropped it"}])

        lost = exchange(master, **request)
        again = exchange(master, **request, retry=True)

    assert [(a["status"], a["lease_lost"]) for a in lost["results"]] == [("queued", False)]
    assert [(t["id"], t["attempt"]) for t in lost["tasks"]] == [(task["id"], 2)], "queued again, leased again"
    assert [(a["status"], a["lease_lost"]) for a in again["results"]] == [("running", False)], \
        "recorded the first time, though the task runs under another lease now"
    assert [(t["id"], t["lease_id"], t["attempt"]) for t in again["tasks"]] == [(task["id"], request["request_id"], 2)]
    with psycopg.connect(stack.database_url) as conn:
        assert conn.execute("SELECT attempt, error FROM task_failures").fetchall() == [(1, "dropped it")]


def test_a_long_poll_sent_again_stops_its_first_attempt_which_then_leases_nothing(stack, master):
    request = {"worker": "w1", "max_tasks": 2, "wait": 20, "request_id": str(uuid.uuid4())}
    with ThreadPoolExecutor(2) as pool:
        # the worker gave up on the first attempt, but its connection to Master stays open: Master cannot tell
        first = pool.submit(master.post, "/v1/tasks/claim", json=request)
        time.sleep(0.5)
        again = pool.submit(master.post, "/v1/tasks/claim", json={**request, "retry": True})
        stopped = first.result(timeout=5)
        order(stack, ["apple", "kiwi"])
        answer = again.result(timeout=25)

    assert stopped.status_code == 200 and stopped.json() == {"tasks": []}, "stopped by the retry, leasing nothing"
    assert answer.status_code == 200
    assert [t["lease_id"] for t in answer.json()["tasks"]] == [request["request_id"]] * 2, "the retry got both"


def test_an_exchange_records_a_batch_of_results_each_on_its_own_and_leases_more(stack, master):
    placed = order(stack, ["apple", "banana", "kiwi", "mango"])
    first, second, third, fourth = claim(master, max_tasks=4)
    done = {"outcome": "succeeded", "result": "ok"}

    answer = exchange(master, [
        {"id": first["id"], "lease_id": first["lease_id"], **done},
        {"id": first["id"], "lease_id": first["lease_id"], **done},  # the same result twice: recorded once
        {"id": second["id"], "lease_id": str(uuid.uuid4()), **done},  # a stale lease
        {"id": 999_999, "lease_id": str(uuid.uuid4()), **done},  # no such task
        {"id": third["id"], "lease_id": third["lease_id"], "outcome": "failed", "error": "dropped it"},
    ], max_tasks=5)

    assert [(a["id"], a["status"], a["lease_lost"]) for a in answer["results"]] == [
        (first["id"], "succeeded", False), (first["id"], "succeeded", False), (second["id"], "running", True),
        (999_999, None, False), (third["id"], "queued", False)]
    assert [t["id"] for t in answer["tasks"]] == [third["id"]], "the failed fruit is queued again, leased here"
    retried = answer["tasks"][0]
    assert retried["attempt"] == 2
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "in_progress", 5,
               message="the order in progress (confirmed within SALAD_INTAKE_INTERVAL)")

    last = exchange(master, [{"id": t["id"], "lease_id": t["lease_id"], **done} for t in (second, retried, fourth)])
    assert [a["status"] for a in last["results"]] == ["succeeded"] * 3 and last["tasks"] == []
    final = wait_final(stack, placed["id"], timeout=10)
    assert final["status"] == "completed" and final["counts"]["done"] == 4


def completions(stack, order_id: int) -> list[tuple]:
    """The state reports Master queued for an order: (version, status)."""
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute("SELECT version, status FROM outbox WHERE order_id = %s ORDER BY version",
                            (order_id,)).fetchall()


def test_an_orders_results_recorded_at_the_same_time_complete_it_exactly_once(stack, master):
    placed = order(stack, ["apple", "banana", "kiwi", "mango"] * 10)
    tasks = claim(master, max_tasks=40)

    def succeed(task: dict) -> int:
        return master.post(f"/v1/tasks/{task['id']}/result",
                           json={"lease_id": task["lease_id"], "result": "ok"}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(succeed, tasks))

    assert len(tasks) == 40 and statuses == [200] * 40
    final = wait_final(stack, placed["id"], timeout=10)
    assert final["status"] == "completed" and final["counts"]["done"] == 40
    assert completions(stack, placed["id"]) == [(1, "completed")]


def test_a_result_posted_alone_leases_nothing_and_leaves_the_queue_as_it_was(stack, master):
    """A result posted alone is recorded by the exchange statement with a claim of nothing."""
    placed = order(stack, ["apple", "banana", "kiwi"])
    [taken] = claim(master)

    def tasks_of_the_order() -> dict[int, tuple]:
        answer = master.get("/v1/tasks", params={"order_id": placed["id"]}, headers=stack.client_headers)
        return {t["id"]: (t["status"], t["attempts"], t["worker"], t["claimed_at"]) for t in answer.json()}

    before = tasks_of_the_order()
    answer = master.post(f"/v1/tasks/{taken['id']}/result", json={"lease_id": taken["lease_id"], "result": "ok"})

    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    after = tasks_of_the_order()
    assert after[taken["id"]][0] == "succeeded"
    others = sorted(set(before) - {taken["id"]})
    assert [after[i] for i in others] == [before[i] for i in others] == [("queued", 0, None, None)] * 2
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "in_progress", 5,
               message="the order in progress (confirmed within SALAD_INTAKE_INTERVAL)")


def test_concurrent_exchanges_finishing_the_same_orders_complete_each_exactly_once(stack, master):
    placed = [order(stack, ["apple", "banana", "kiwi", "mango"] * 6) for _ in range(3)]
    wait_until(lambda: sum(get_order(stack, p["id"])["counts"]["queued"] for p in placed) == 72, 20,
               message="all three orders split")
    tasks = claim(master, max_tasks=72)
    done = {"outcome": "succeeded", "result": "ok"}
    # eight batches, each with fruits of all three orders, in a different order in each batch
    batches = [sorted(tasks[i::8], key=lambda t: (t["order_id"] * (1 if i % 2 else -1), t["id"]))
               for i in range(8)]

    def report(batch: list[dict]) -> list[str]:
        answer = exchange(master, [{"id": t["id"], "lease_id": t["lease_id"], **done} for t in batch],
                          worker=f"w{len(batch)}")
        return [a["status"] for a in answer["results"]]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [status for answer in pool.map(report, batches) for status in answer]

    assert len(tasks) == 72 and statuses == ["succeeded"] * 72
    for p in placed:
        final = wait_final(stack, p["id"], timeout=10)
        assert final["status"] == "completed" and final["counts"]["done"] == 24
        assert final["preparation_time"] > 0
        assert completions(stack, p["id"]) == [(1, "completed")]


def test_fruits_finished_after_their_order_failed_count_when_it_resumes(stack, master):
    placed = order(stack, ["durian", "apple", "kiwi"])
    clumsy, *others = claim(master, max_tasks=3)  # the first to fail
    for attempt in (1, 2):  # SALAD_MAX_ATTEMPTS=2: the second failure fails the order
        master.post(f"/v1/tasks/{clumsy['id']}/result",
                    json={"lease_id": clumsy["lease_id"], "outcome": "failed", "error": "knife broke"})
        if attempt == 1:
            [clumsy] = claim(master)
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "failed", 20, message="order failed")
    for task in others:  # were being prepared when the order failed
        response = master.post(f"/v1/tasks/{task['id']}/result", json={"lease_id": task["lease_id"], "result": "ok"})
        assert response.json()["status"] == "succeeded"

    master.post(f"/v1/orders/{placed['id']}/requeue", headers=stack.client_headers).raise_for_status()
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "in_progress", 20, message="order resumed")
    [clumsy] = claim(master)
    master.post(f"/v1/tasks/{clumsy['id']}/result", json={"lease_id": clumsy["lease_id"], "result": "ok"})

    final = wait_final(stack, placed["id"], timeout=20)
    assert final["status"] == "completed" and final["counts"]["done"] == 3
    assert completions(stack, placed["id"]) == [(1, "failed"), (2, "in_progress"), (3, "completed")]


def test_an_exchange_without_results_long_polls_like_a_claim(stack, master):
    response = master.post("/v1/tasks/exchange", json={"worker": "w1", "max_tasks": 2, "wait": 0.3})
    assert response.status_code == 200 and response.json() == {"results": [], "tasks": []}
    refused = master.post("/v1/tasks/exchange", json={"worker": "w1", "results": [{"id": 1, "lease_id": "x"}]})
    assert refused.status_code == 422 and "lease_id" in refused.json()["message"]


def test_a_long_poll_its_worker_left_leases_nothing(stack, master):
    with pytest.raises(httpx.ReadTimeout):  # a worker stopping cancels its long-poll
        master.post("/v1/tasks/claim", json={"worker": "gone", "max_tasks": 1, "wait": 20}, timeout=0.5)
    placed = order(stack, ["apple"])

    time.sleep(1.5)  # Master's intake splits the order and wakes every waiting claim at once
    task = get_order(stack, placed["id"])["tasks"][0]
    assert (task["status"], task["attempts"]) == ("queued", 0), "nothing leased to the worker that left"
    assert [t["order_id"] for t in claim(master)] == [placed["id"]], "a worker still waiting gets it"


def test_results_are_idempotent_and_stale_leases_get_409(stack, master):
    order(stack, ["apple"])
    task = claim(master)[0]
    body = {"lease_id": task["lease_id"], "result": "done"}

    first = master.post(f"/v1/tasks/{task['id']}/result", json=body)
    again = master.post(f"/v1/tasks/{task['id']}/result", json=body)
    other_lease = str(uuid.uuid4())
    stale = master.post(f"/v1/tasks/{task['id']}/result", json={"lease_id": other_lease, "result": "x"})
    beat = master.post(f"/v1/tasks/{task['id']}/heartbeat", json={"lease_id": other_lease})

    assert first.status_code == again.status_code == 200
    assert again.json()["status"] == "succeeded"
    assert stale.status_code == 409 and "lease" in stale.json()["detail"]
    assert beat.status_code == 409
    assert master.post("/v1/tasks/999999/heartbeat", json={"lease_id": other_lease}).status_code == 404


def test_an_expired_lease_is_requeued_and_the_old_worker_gets_409(stack, master):
    order(stack, ["apple"])
    first = claim(master, worker="slow")[0]

    second = claim(master, worker="fast", wait=10)[0]  # after the 1 s lease expires, the task is queued again

    assert second["id"] == first["id"] and second["attempt"] == 2
    late = master.post(f"/v1/tasks/{first['id']}/result", json={"lease_id": first["lease_id"], "result": "late"})
    assert late.status_code == 409


def test_a_heartbeat_keeps_the_lease_alive(stack, master):
    order(stack, ["apple"])
    task = claim(master)[0]
    for _ in range(6):
        time.sleep(0.4)
        assert master.post(f"/v1/tasks/{task['id']}/heartbeat", json={"lease_id": task["lease_id"]}).status_code == 200

    assert claim(master, worker="other", wait=0) == []
    done = master.post(f"/v1/tasks/{task['id']}/result", json={"lease_id": task["lease_id"], "result": "ok"})
    assert done.status_code == 200


def test_a_released_task_is_queued_again_without_losing_an_attempt(stack, master):
    order(stack, ["apple"])
    task = claim(master)[0]

    released = master.post(f"/v1/tasks/{task['id']}/release", json={"lease_id": task["lease_id"]})
    again = claim(master, worker="other")[0]

    assert released.status_code == 200 and released.json()["status"] == "queued"
    assert again["id"] == task["id"] and again["attempt"] == 1


def test_a_task_whose_leases_keep_expiring_fails_its_order_with_a_reason(stack, master):
    placed = order(stack, ["durian"])
    for _ in range(2):  # SALAD_MAX_ATTEMPTS=2: lose both leases
        assert claim(master, worker="vanishing", wait=10)

    final = wait_final(stack, placed["id"], timeout=20)

    assert final["status"] == "failed"
    assert "failed after 2 attempts: lease expired on worker vanishing" in final["failure_reason"]
    assert final["counts"]["failed"] == 1


def test_a_task_failing_on_every_attempt_fails_its_order_and_drops_its_queued_fruits(stack, master):
    placed = order(stack, ["durian", "apple"])
    for attempt in (1, 2):
        task = claim(master)[0]  # the longest fruit first, each time
        assert task["attempt"] == attempt
        failed = {"lease_id": task["lease_id"], "outcome": "failed", "error": "knife broke"}
        assert master.post(f"/v1/tasks/{task['id']}/result", json=failed).status_code == 200

    final = wait_final(stack, placed["id"], timeout=20)

    assert final["status"] == "failed"
    assert "failed after 2 attempts: knife broke" in final["failure_reason"]
    assert final["counts"] == {"queued": 0, "running": 0, "done": 0, "failed": 2}
    assert claim(master, wait=0) == [], "the failed order's other fruit is not handed out"


def test_a_failure_reason_longer_than_shared_takes_is_shortened_and_the_failure_reported(stack, master):
    placed = order(stack, ["durian"])
    for _ in (1, 2):
        task = claim(master)[0]
        failed = {"lease_id": task["lease_id"], "outcome": "failed", "error": "x" * 10_000}  # the most allowed
        assert master.post(f"/v1/tasks/{task['id']}/result", json=failed).status_code == 200

    final = wait_final(stack, placed["id"], timeout=20)

    assert final["status"] == "failed"
    assert final["failure_reason"].startswith("durian (task ")
    assert len(final["failure_reason"]) == 10_000


def test_workers_register_and_are_listed_with_their_load(stack, master):
    assert master.put("/v1/workers/w-a", json={"slots": 4, "busy": 1}).status_code == 204

    listed = master.get("/v1/workers", headers=stack.client_headers).json()
    stats = master.get("/v1/stats").json()

    assert [(w["name"], w["slots"], w["busy"], w["live"]) for w in listed] == [("w-a", 4, 1, True)]
    assert stats["live_workers"] == 1
    assert master.delete("/v1/workers/w-a").status_code == 204
    assert master.get("/v1/workers", headers=stack.client_headers).json() == []


def test_shared_and_master_raise_their_open_files_limit_to_the_hard_one(make_stack, postgres_url):
    """Each worker keeps two connections open to its Master: under the soft limit of 1,024 open files some
    container runtimes give, a replica could not hold 500 workers. The services raise it to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 256:
        pytest.skip(f"the hard limit of open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the services started now inherit it
    try:
        stack = make_stack(postgres_url, workers=0)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    for service in stack.services:
        limits = Path(f"/proc/{service.process.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3:5] == [str(hard), str(hard)], (service.name, line)


def test_the_stats_total_the_live_workers_slots_which_the_charts_read_without_listing_every_worker(stack,
                                                                                                      master):
    """Shared samples the queue and the slots for its charts every few seconds, page open or not: read from
    the stats, the sample costs Master a few index scans, not a list of every live worker to sum up."""
    assert master.put("/v1/workers/w-a", json={"slots": 4, "busy": 1}).status_code == 204
    assert master.put("/v1/workers/w-b", json={"slots": 2}).status_code == 204

    assert master.get("/v1/stats").json()["slots"] == 6
    charts = wait_until(lambda: (c := httpx.get(f"{stack.shared_url}/v1/charts", headers=stack.client_headers)
                                 .json())["load"] and c["load"][-1]["slots"] == 6 and c, 15, message="sampled")
    assert charts["load"][-1]["busy"] == 0  # no fruit runs
    progress_reads = [line for line in httpx.get(f"{stack.master_url}/metrics").text.splitlines()
                      if line.startswith("salad_http_requests_total{") and 'route="/v1/progress"' in line]
    assert progress_reads == [], "no page is open: nothing needed the fruits or the list of workers"


def test_a_workers_connection_stays_open_between_its_heartbeats(stack):
    """A worker checks in every SALAD_HEARTBEAT_INTERVAL on a connection of its own (its long-poll holds the
    other): closed while idle in between, each check-in costs Master a new connection, or fails when the
    server closes it just as the worker sends."""
    beat = WorkerSettings.model_fields["heartbeat_interval"].default
    connection = http.client.HTTPConnection(urlsplit(stack.master_url).netloc, timeout=10)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() and connection.sock is not None
        opened = connection.sock
        time.sleep(beat + 1.0)
        connection.request("GET", "/healthz")  # on the same socket: http.client does not reconnect by itself
        response = connection.getresponse()
        assert response.status == 200 and connection.sock is opened
    finally:
        connection.close()


@pytest.mark.parametrize("path,body,expected", [
    ("/v1/tasks/claim", {"worker": "", "max_tasks": 1}, "worker"),
    ("/v1/tasks/claim", {"worker": "w", "max_tasks": 0}, "max_tasks"),
    ("/v1/tasks/claim", {"worker": "w", "wait": -1}, "wait"),
    ("/v1/tasks/claim", {"worker": "w", "extra": 1}, "extra"),
    ("/v1/tasks/1/result", {"lease_id": str(uuid.UUID(int=1)), "outcome": "maybe"}, "outcome"),
    ("/v1/tasks/1/result", {"lease_id": "not-a-uuid"}, "lease_id"),
    ("/v1/tasks/1/result", {"lease_id": str(uuid.UUID(int=1)), "result": "nul\u0000"}, "result"),
    ("/v1/tasks/0/heartbeat", {"lease_id": str(uuid.UUID(int=1))}, "task_id"),
    ("/v1/tasks/99999999999/heartbeat", {"lease_id": str(uuid.UUID(int=1))}, "task_id"),
    ("/send_task", {}, "nom_worker"),
    ("/v1/tasks/exchange", {"worker": "w", "wait": False}, "wait"),
    ("/v1/tasks/exchange", {"worker": "w", "max_tasks": "2"}, "max_tasks"),
    ("/v1/tasks/claim", {"worker": "w", "max_tasks": True}, "max_tasks"),
])
def test_bad_worker_requests_get_a_4xx_naming_the_field(master, path, body, expected):
    response = master.post(path, json=body)

    assert response.status_code == 422
    assert expected in response.json()["message"]


def test_failed_tasks_are_listed_with_their_attempts_and_requeued_and_the_order_resumes(stack, master):
    placed = order(stack, ["durian", "apple"])
    for _ in (1, 2):
        task = claim(master, worker="clumsy")[0]
        master.post(f"/v1/tasks/{task['id']}/result",
                    json={"lease_id": task["lease_id"], "outcome": "failed", "error": "knife broke"})
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "failed", 20, message="order failed")
    operator = {"headers": stack.client_headers}

    failed = master.get("/v1/tasks", params={"status": "failed", "order_id": placed["id"]}, **operator).json()
    broken = next(t for t in failed if t["id"] == task["id"])
    requeued = master.post(f"/v1/tasks/{task['id']}/requeue", **operator)

    assert [(f["attempt"], f["worker"], f["error"]) for f in broken["failures"]] == \
        [(1, "clumsy", "knife broke"), (2, "clumsy", "knife broke")]
    assert requeued.status_code == 200 and requeued.json() == {"requeued": 2}, "with the cancelled fruit"
    wait_until(lambda: get_order(stack, placed["id"])["status"] == "in_progress", 20, message="order resumed")
    for task in claim(master, worker="careful", max_tasks=2):
        master.post(f"/v1/tasks/{task['id']}/result", json={"lease_id": task["lease_id"], "result": "ok"})
    final = wait_final(stack, placed["id"], timeout=20)
    assert final["status"] == "completed" and final["failure_reason"] is None
    assert master.post(f"/v1/tasks/{task['id']}/requeue", **operator).status_code == 409
    assert master.post(f"/v1/orders/{placed['id']}/requeue", **operator).status_code == 409
    assert master.post("/v1/orders/999999/requeue", **operator).status_code == 404, "no such order"


def test_a_task_past_its_time_limit_is_stopped_on_the_worker_and_retried_then_failed(make_stack, postgres_url):
    limits = {**QUICK_LEASES, "SALAD_TASK_TIMEOUT_SECONDS": "0.5", "SALAD_EXECUTION_TIME_MIN": "30",
              "SALAD_EXECUTION_TIME_MAX": "30"}
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=1.0, env=limits)
    placed = order(stack, ["coconut"])

    final = wait_final(stack, placed["id"], timeout=30)

    assert final["status"] == "failed"
    assert "failed after 2 attempts: stopped after 0.5 s on worker worker-1" in final["failure_reason"]
    assert final["tasks"][0]["attempts"] == 2


def test_a_master_stopping_answers_its_long_polls_at_once_with_no_task(stack, master):
    """On SIGTERM, Master answers the claims waiting on it with no task there and then (their workers claim
    again elsewhere, or once it is back), and stops: it does not keep them, and its restart, waiting until
    each long-poll runs out."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(master.post, "/v1/tasks/claim", json={"worker": "w1", "wait": 30})
        time.sleep(1.0)  # the claim found the queue empty and waits
        assert not waiting.done()
        started = time.monotonic()
        stack.find("master").signal(signal.SIGTERM)
        answer = waiting.result(timeout=10)
        answered_after = time.monotonic() - started
    stack.find("master").process.wait(10)  # after its shutdown, uvicorn ends by the signal it was sent

    assert answer.status_code == 200 and answer.json()["tasks"] == []
    assert answered_after < 5, f"answered {answered_after:.1f} s after SIGTERM, not when its wait ran out"
