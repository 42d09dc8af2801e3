"""A salad's story and its requeue through Shared, and honest liveness: a hung worker and the fruit it holds
say for how long they have not been heard from, and stop saying so once they are heard again."""

import signal

import httpx

from tests.helpers import order, wait_final, wait_until

FAST = {"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}
# Every fruit runs past its 0.2 s limit and fails twice: the order fails.
FAILING = {**FAST, "SALAD_TASK_TIMEOUT_SECONDS": "0.2", "SALAD_EXECUTION_TIME_MIN": "30",
           "SALAD_EXECUTION_TIME_MAX": "30", "SALAD_MAX_ATTEMPTS": "2"}
# A worker checks in and renews its leases every second; it is unresponsive after 3 s of silence, its
# fruit after 3 s too (half the lease), and it is no longer live after 6 s.
QUICK_LIVENESS = {**FAST, "SALAD_HEARTBEAT_INTERVAL": "1", "SALAD_LEASE_SECONDS": "6",
                  "SALAD_WORKER_TTL_SECONDS": "6", "SALAD_EXECUTION_TIME_MIN": "60",
                  "SALAD_EXECUTION_TIME_MAX": "60"}


def client_of(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.shared_url, headers=stack.client_headers, timeout=10)


def test_a_failed_salads_story_gives_every_attempt_and_requeue_retries_it(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=1.0, env=FAILING)
    failed = wait_final(stack, order(stack, ["coconut"])["id"])
    assert failed["status"] == "failed"

    with client_of(stack) as api:
        story = api.get(f"/v1/orders/{failed['id']}/story").json()
        requeued = api.post(f"/v1/orders/{failed['id']}/requeue")
        # Queued again with fresh attempts, the fruit runs past its limit twice more.
        again = wait_until(lambda: len((s := api.get(f"/v1/orders/{failed['id']}/story").json())["fruits"][0]
                                       ["failures"]) == 4 and s, 30)
        stack.stop_service(stack.find("master"))
        away = api.get(f"/v1/orders/{failed['id']}/story").json()  # Shared answers with what it owns
        unreachable = api.post(f"/v1/orders/{failed['id']}/requeue")

    assert story["order"]["status"] == "failed"
    assert story["order"]["failure_reason"].startswith("coconut (task ")
    [fruit] = story["fruits"]
    assert fruit["state"] == "failed" and fruit["worker"] == "worker-1"
    assert fruit["error"] == "stopped after 0.2 s on worker worker-1"
    assert [(a["attempt"], a["worker"], a["error"]) for a in fruit["failures"]] == [
        (1, "worker-1", fruit["error"]), (2, "worker-1", fruit["error"])]
    assert fruit["queued_at"] <= fruit["started_at"] <= fruit["finished_at"]
    assert requeued.status_code == 200 and requeued.json() == {"requeued": 1}
    assert [a["attempt"] for a in again["fruits"][0]["failures"]] == [1, 2, 1, 2]
    assert away["fruits_unavailable"] is True and away["fruits"] == [] and away["order"]["id"] == failed["id"]
    assert unreachable.status_code == 503 and unreachable.headers["retry-after"]
    assert unreachable.json()["message"] == "Master cannot be reached to requeue the order; retry later"


def test_a_hung_worker_and_its_fruit_say_how_long_they_were_silent_until_heard_again(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=1.0, env=QUICK_LIVENESS)
    placed = order(stack, ["kiwi"])
    with client_of(stack) as api:
        fruit = lambda: api.get(f"/v1/orders/{placed['id']}").json()["tasks"][0]  # noqa: E731
        worker = lambda: api.get("/v1/dashboard").json()["workers"]  # noqa: E731
        wait_until(lambda: fruit()["status"] == "running", 15)
        assert fruit()["silent_for"] is None and worker()[0]["silent_for"] is None  # heard from: nothing said

        stack.worker_services[0].signal(signal.SIGSTOP)  # hung: no check-in, no lease renewed
        try:
            silent_fruit = wait_until(lambda: (f := fruit())["silent_for"] is not None and f, 10)
            silent_worker = wait_until(lambda: (w := worker()) and w[0]["silent_for"] is not None and w[0], 10)
            wait_until(lambda: worker() == [], 10, message="the worker no longer live")
        finally:
            stack.worker_services[0].signal(signal.SIGCONT)
        back = wait_until(lambda: (w := worker()) and w[0]["silent_for"] is None and w[0], 10)

    assert silent_fruit["status"] == "running" and silent_fruit["worker"] == "worker-1"
    assert 3 <= silent_fruit["silent_for"] <= 6
    assert silent_worker["name"] == "worker-1" and 3 <= silent_worker["silent_for"] <= 6
    assert back["name"] == "worker-1"
