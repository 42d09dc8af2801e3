"""The seed document's own worker loop and client, talking only to the seed routes, complete salads.

The functions below follow the seed's code (worker.py's get_task / prepared_fruit / send_result /
do_task, and the client ordering through Shared then asking Master for the command), with the hard-coded
IPs replaced by the stack's URLs and the endless loops bounded.
"""

import threading
import time

import httpx

from tests.helpers import order, wait_final

SEED_MASTER = {"SALAD_SEED_ROUTES_OPEN": "true", "SALAD_EXECUTION_TIME_MIN": "0", "SALAD_EXECUTION_TIME_MAX": "1",
               "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}


def seed_worker(master_url: str, nom_workers: str, stop: threading.Event, prepared: list) -> None:
    def prepared_fruit(id_, fruit, t):
        time.sleep(t)
        return f"{id_} {fruit} prepared in {t} seconds"

    def send_result(url, data):
        with httpx.Client() as session:
            session.post(url, json=data)

    def get_task():
        response = httpx.post(f"{master_url}/send_task", json={"nom_worker": nom_workers})
        if response.status_code == 200:
            return response.json()
        return None

    while not stop.is_set():  # the seed's `while True`
        task_data = get_task()
        while task_data:
            prepare_fruit = prepared_fruit(task_data["id"], task_data["fruit"], task_data["execution_time"])
            data = {
                "task": {"id": task_data["id"], "fruit": task_data["fruit"],
                         "execution_time": task_data["execution_time"], "nom_worker": nom_workers},
                "result": prepare_fruit,
            }
            send_result(f"{master_url}/result", data)
            prepared.append(task_data["id"])
            task_data = get_task()
        stop.wait(0.2)  # the seed sleeps 3 s; shortened so the test is quick


def seed_client_orders(shared_url: str, fruits: list[str]) -> httpx.Response:
    return httpx.post(f"{shared_url}/create_task/", json=[{"fruit": f} for f in fruits])


def seed_client_waits_for_command(master_url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{master_url}/send_command")
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202 and response.json() == {"message": "No command"}
        time.sleep(0.2)
    raise AssertionError("no command came back")


def test_the_seed_worker_and_client_complete_salads(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, env=SEED_MASTER)
    stop, prepared = threading.Event(), []
    workers = [threading.Thread(target=seed_worker, args=(stack.master_url, f"Worker_{i}", stop, prepared))
               for i in range(2)]
    for thread in workers:
        thread.start()
    try:
        for fruits in (["apple", "banana", "kiwi"], ["mango", "pear"]):
            created = seed_client_orders(stack.shared_url, fruits)
            assert created.status_code == 200 and created.json() == {"message": "Task created"}

            command = seed_client_waits_for_command(stack.master_url, timeout=30)

            assert command["message"] == "The salad is ready! Enjoy!"
            assert command["preparation_time"] >= 0
    finally:
        stop.set()
        for thread in workers:
            thread.join(10)
    assert len(prepared) == 5 and len(set(prepared)) == 5
    assert httpx.get(f"{stack.master_url}/send_command").status_code == 202, "each command is handed out once"
    assert httpx.post(f"{stack.master_url}/send_task", json={"nom_worker": "late"}).json() == {"message": "No more tasks"}


def test_the_seed_shared_route_lists_fruits_waiting_for_a_master(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, env=SEED_MASTER)
    assert httpx.get(f"{stack.shared_url}/get_tasks_to_do/").status_code == 202
    stack.stop_service(stack.find("master"))  # no Master to take the order: its fruits wait

    seed_client_orders(stack.shared_url, ["apple", "kiwi"])
    response = httpx.get(f"{stack.shared_url}/get_tasks_to_do/")

    assert response.status_code == 200
    assert response.json() == [{"fruit": "apple"}, {"fruit": "kiwi"}]


def test_a_command_asked_again_with_its_key_is_handed_out_again(make_stack, postgres_url):
    """A salad is marked handed out before its answer leaves: a client whose answer was lost (Master killed,
    connection cut) asks again with the same Idempotency-Key and gets that salad, not the next one."""
    stack = make_stack(postgres_url, workers=1, time_scale=0, env=SEED_MASTER)
    for fruits in (["apple"], ["kiwi", "pear"]):
        wait_final(stack, order(stack, fruits)["id"])

    def send_command(key: str) -> httpx.Response:
        headers = {**stack.client_headers, "Idempotency-Key": key}
        return httpx.get(f"{stack.master_url}/send_command", headers=headers)

    first, again, second, none_left = (send_command(key) for key in ("a", "a", "b", "c"))

    assert first.status_code == again.status_code == second.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert second.json() != first.json() and "Idempotent-Replayed" not in second.headers
    assert none_left.status_code == 202
