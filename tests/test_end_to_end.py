"""The whole system over real HTTP and a real PostgreSQL: many orders, several Masters, killed workers."""

import signal
import time

import httpx
import psycopg

from tests.helpers import get_order, order, prepared_tasks, wait_final, wait_until

FRUITS = ["apple", "banana", "kiwi", "mango", "orange", "pear", "grape", "cherry", "melon", "plum"]
FAST = {"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}


def task_rows(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT id, order_id, status, attempts, worker FROM tasks ORDER BY id").fetchall()


def test_twenty_orders_of_ten_fruits_complete_with_each_task_prepared_once(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=4, slots=4, time_scale=0.01, env=FAST)
    ids = [order(stack, FRUITS)["id"] for _ in range(20)]

    finals = [wait_final(stack, order_id, timeout=120) for order_id in ids]

    assert [o["status"] for o in finals] == ["completed"] * 20
    for final in finals:
        assert final["counts"] == {"queued": 0, "running": 0, "done": 10, "failed": 0}
        assert final["preparation_time"] > 0
        assert final["completed_at"] >= final["created_at"]
    rows = task_rows(postgres_url)
    assert len(rows) == 200
    assert {(status, attempts) for _, _, status, attempts, _ in rows} == {("succeeded", 1)}
    prepared = prepared_tasks(stack)
    assert sorted(prepared) == [row[0] for row in rows]
    assert set(prepared.values()) == {1}, "a task was prepared more than once"
    assert len({row[4] for row in rows}) == 4, "every worker took part"


def test_two_masters_on_one_database_never_hand_a_task_out_twice(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=2, slots=3, time_scale=0.005, env=FAST)
    second = stack.add_master()
    stack.add_worker(SALAD_MASTER_URL=second.url)
    ids = [order(stack, FRUITS)["id"] for _ in range(15)]

    finals = [wait_final(stack, order_id, timeout=120) for order_id in ids]

    assert {o["status"] for o in finals} == {"completed"}
    rows = task_rows(postgres_url)
    assert len(rows) == 150
    assert {(status, attempts) for _, _, status, attempts, _ in rows} == {("succeeded", 1)}
    prepared = prepared_tasks(stack)
    assert len(prepared) == 150 and set(prepared.values()) == {1}
    assert "worker-3" in {row[4] for row in rows}, "the worker on the second Master took part"


LEASE = {"SALAD_LEASE_SECONDS": "2", "SALAD_REAPER_INTERVAL": "0.2", "SALAD_HEARTBEAT_INTERVAL": "0.4", **FAST}


def running_task_of(stack, order_id: int, worker: str):
    tasks = get_order(stack, order_id)["tasks"]
    return next((t for t in tasks if t["status"] == "running" and t["worker"] == worker), None)


def test_a_worker_killed_while_holding_a_task_does_not_lose_it(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=0.2, env=LEASE)
    placed = order(stack, ["apple", "kiwi"])
    held = wait_until(lambda: running_task_of(stack, placed["id"], "worker-1"), 20, message="task leased")

    victim = stack.find("worker-1")
    victim.signal(signal.SIGKILL)
    victim.process.wait(5)
    stack.add_worker("worker-2", SALAD_TIME_SCALE="0.01")
    final = wait_final(stack, placed["id"], timeout=60)

    assert final["status"] == "completed"
    requeued = next(t for t in final["tasks"] if t["position"] == held["position"])
    assert requeued["worker"] == "worker-2"
    assert requeued["attempts"] == 2, "the lost lease counted as an attempt"


def test_a_sigtermed_worker_finishes_its_task_within_the_grace_period(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=1, slots=2, time_scale=0.1, env=LEASE)
    placed = order(stack, ["apple", "banana"])
    wait_until(lambda: running_task_of(stack, placed["id"], "worker-1"), 20, message="task leased")

    started = time.monotonic()
    code = stack.stop_service(stack.find("worker-1"))

    assert code == 0
    assert time.monotonic() - started < 30
    final = get_order(stack, placed["id"])
    done_by_worker1 = [t for t in final["tasks"] if t["worker"] == "worker-1" and t["status"] == "succeeded"]
    assert done_by_worker1, "the in-flight fruit was finished, not dropped"


def test_a_sigtermed_worker_hands_back_what_it_cannot_finish(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=1, time_scale=1.0, env=LEASE)
    stack.add_worker("worker-1", SALAD_GRACE_SECONDS="0")
    placed = order(stack, ["watermelon"])
    wait_until(lambda: running_task_of(stack, placed["id"], "worker-1"), 20, message="task leased")

    started = time.monotonic()
    code = stack.stop_service(stack.find("worker-1"))
    elapsed = time.monotonic() - started

    assert code == 0 and elapsed < 3, f"exit {code} after {elapsed:.1f}s"
    released = get_order(stack, placed["id"])["tasks"][0]
    assert released["status"] == "queued" and released["attempts"] == 0, "handed back at once, attempt not counted"
    stack.add_worker("worker-2", SALAD_TIME_SCALE="0.01")
    final = wait_final(stack, placed["id"], timeout=30)
    assert final["status"] == "completed" and final["tasks"][0]["worker"] == "worker-2"


def test_prefetched_tasks_wait_for_a_slot_and_are_handed_back_at_once_on_sigterm(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=1, time_scale=0.5, env=LEASE)  # fruits of 2-10 s
    stack.add_worker("worker-1", SALAD_PREFETCH="2")
    placed = order(stack, ["apple", "kiwi", "mango"])
    leased = wait_until(lambda: len(tasks := running_tasks(stack, placed["id"])) == 3 and tasks, 20,
                        message="all three leased")
    assert {t["worker"] for t in leased} == {"worker-1"}
    busy = httpx.get(f"{stack.master_url}/v1/workers", headers=stack.client_headers, timeout=10).json()
    assert [w["busy"] for w in busy if w["name"] == "worker-1"] in ([0], [1]), "one slot: one fruit at a time"

    code = stack.stop_service(stack.find("worker-1"))

    assert code == 0
    tasks = get_order(stack, placed["id"])["tasks"]
    assert sorted(t["status"] for t in tasks) == ["queued", "queued", "succeeded"], \
        "the fruit in its slot finished; the two prefetched were handed back"
    assert all(t["attempts"] == 0 for t in tasks if t["status"] == "queued")
    stack.add_worker("worker-2", SALAD_TIME_SCALE="0.01")
    assert wait_final(stack, placed["id"], timeout=30)["status"] == "completed"


def test_a_prefetching_worker_reports_the_results_of_its_short_tasks_together(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=1, time_scale=0.01, env=FAST)  # fruits of 40-200 ms
    stack.add_worker("worker-1", SALAD_PREFETCH="3")
    placed = order(stack, ["apple", "kiwi", "mango", "banana"])

    assert wait_final(stack, placed["id"], timeout=30)["status"] == "completed"
    with psycopg.connect(postgres_url) as conn:
        batches = conn.execute("SELECT finished_at, count(*) FROM tasks WHERE order_id = %s GROUP BY 1 ORDER BY 1",
                               (placed["id"],)).fetchall()
    # All four leased at once; three results wait while a prefetched task is left to start, then go in one
    # exchange (one transaction, one finished_at); the last goes alone.
    assert [count for _, count in batches] == [3, 1]


def test_a_worker_asks_for_its_next_tasks_with_the_results_that_freed_their_slots(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=8, time_scale=0.0,
                       env={**FAST, "SALAD_EXECUTION_TIME_MIN": "0", "SALAD_EXECUTION_TIME_MAX": "0"})
    stack.add_worker("worker-1")
    # One fruit leaves 7 slots free with nothing queued: the worker long-polls for them; that claim is still
    # waiting when the fruit's result goes to Master.
    assert wait_final(stack, order(stack, ["apple"])["id"], timeout=30)["status"] == "completed"
    placed = order(stack, ["kiwi"] * 40)

    assert wait_final(stack, placed["id"], timeout=30)["status"] == "completed"
    with psycopg.connect(postgres_url) as conn:
        results = conn.execute("SELECT count(DISTINCT finished_at) FROM tasks WHERE order_id = %s",
                               (placed["id"],)).fetchone()[0]
    # The long-poll brings 7; then each batch of results leases the next 8 in the same exchange: 7, 8, 8,
    # 8, 8 and the last one. Results sent apart from the claims would take a request each: 7, 1, 7, 1, ...
    assert results <= 6


def test_a_slot_freed_while_a_long_poll_waits_is_asked_for_again(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=2, time_scale=0.1,
                       env={**FAST, "SALAD_EXECUTION_TIME_MIN": "20", "SALAD_EXECUTION_TIME_MAX": "20"})  # 2 s
    stack.add_worker("worker-1")
    # One fruit on two slots: the other slot's long-poll waits on an empty queue while that fruit's result
    # goes to Master, which has nothing more for its slot either.
    assert wait_final(stack, order(stack, ["apple"])["id"], timeout=30)["status"] == "completed"
    placed = order(stack, ["kiwi", "plum", "pear"])

    # The long-poll brings one fruit; the other free slot must be asked for at once, not when that fruit ends.
    wait_until(lambda: len(running_tasks(stack, placed["id"])) == 2, 1.5, message="both slots busy")


def running_tasks(stack, order_id: int) -> list[dict]:
    return [t for t in get_order(stack, order_id)["tasks"] if t["status"] == "running"]


def test_a_busy_worker_asks_for_fruits_to_hold_ahead_only_with_its_results(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=1, time_scale=0.1,
                       env={**FAST, "SALAD_EXECUTION_TIME_MIN": "10", "SALAD_EXECUTION_TIME_MAX": "10"})  # 1 s
    stack.add_worker("worker-1", SALAD_PREFETCH="1")
    first = order(stack, ["apple"])
    wait_until(lambda: running_tasks(stack, first["id"]), 10, message="the first fruit being prepared")
    # Nothing to hold ahead: the busy worker sends no long-poll for it. One would take the next order's
    # first fruit alone now and its second in a later round (between other workers' claims); instead the
    # result of the first fruit asks for both.
    second = order(stack, ["kiwi", "plum"])

    assert wait_final(stack, second["id"], timeout=30)["status"] == "completed"
    with psycopg.connect(postgres_url) as conn:
        (done,) = conn.execute("SELECT finished_at FROM tasks WHERE order_id = %s", (first["id"],)).fetchone()
        leases = conn.execute("SELECT DISTINCT lease_id, claimed_at FROM tasks WHERE order_id = %s",
                              (second["id"],)).fetchall()
    assert len(leases) == 1, "both fruits leased by one claim"
    assert leases[0][1] >= done, "with the first fruit's result"
