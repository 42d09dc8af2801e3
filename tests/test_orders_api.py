"""Shared's public API over real HTTP: orders, idempotency, pagination, and clear 4xx for bad input."""

import httpx
import psycopg
import pytest
from salad.cli.stack import LocalStack

from tests.helpers import wait_until
from tests.postgres import create_database


@pytest.fixture(scope="module")
def stack(postgres_admin_url, migrated_template, tmp_path_factory):
    """One stack with no workers: orders stay where the API put them."""
    url = create_database(postgres_admin_url, "orders_api", template=migrated_template)
    with LocalStack(url, workers=0, log_dir=tmp_path_factory.mktemp("logs"),
                    env={"SALAD_MAX_FRUITS": "10"}) as running:
        yield running


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.shared_url, headers=stack.client_headers, timeout=10) as client:
        yield client


def stored_orders(stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute("SELECT count(*) FROM orders").fetchone()[0]


def test_an_order_is_created_with_its_location_and_read_back(api):
    response = api.post("/v1/orders", json={"fruits": ["apple", "kiwi", " mango "]})

    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"/v1/orders/{created['id']}"
    assert created["fruits"] == ["apple", "kiwi", "mango"]
    read = api.get(response.headers["location"]).json()
    assert read["id"] == created["id"]
    assert read["counts"]["done"] == 0
    assert sum(read["counts"].values()) == 3
    assert [t["fruit"] for t in read["tasks"]] == ["apple", "kiwi", "mango"]


def test_a_retried_order_with_the_same_idempotency_key_creates_one_order(api, stack):
    before = stored_orders(stack)
    first = api.post("/v1/orders", json={"fruits": ["pear"]}, headers={"Idempotency-Key": "retry-1"})
    again = api.post("/v1/orders", json={"fruits": ["pear"]}, headers={"Idempotency-Key": "retry-1"})

    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert stored_orders(stack) == before + 1


def test_an_idempotency_key_reused_for_other_fruits_is_refused(api, stack):
    api.post("/v1/orders", json={"fruits": ["pear"]}, headers={"Idempotency-Key": "reuse-1"})
    before = stored_orders(stack)

    response = api.post("/v1/orders", json={"fruits": ["plum"]}, headers={"Idempotency-Key": "reuse-1"})

    assert response.status_code == 422
    assert "Idempotency-Key: already used for a different order" in response.json()["message"]
    assert stored_orders(stack) == before


def test_orders_are_listed_newest_first_a_page_at_a_time(api):
    ids = [api.post("/v1/orders", json={"fruits": ["fig"]}).json()["id"] for _ in range(3)]
    wait_until(lambda: all(api.get(f"/v1/orders/{i}").json()["status"] == "in_progress" for i in ids),
               timeout=10, message="Master takes the orders")

    page = api.get("/v1/orders", params={"limit": 2, "status": "in_progress"}).json()
    following = api.get(page["next"]).json()

    assert [o["id"] for o in page["items"]] == ids[::-1][:2]
    assert following["items"][0]["id"] == ids[0]
    assert all(o["status"] == "in_progress" for o in page["items"] + following["items"])


BAD_ORDERS = [  # Shared's words for an order's fields (shared/plain.py), the field's path for anything else
    ("empty order", {"fruits": []}, "Choose at least one fruit."),
    ("more fruits than the limit", {"fruits": ["apple"] * 11}, "A salad holds at most 10 fruits; this one has 11."),
    ("a fruit that is not a string", {"fruits": ["apple", 42]}, "Fruit 2 must be a name, not 42."),
    ("an empty fruit", {"fruits": ["apple", "  "]}, "Fruit 2 is empty: type a name or remove the extra comma."),
    ("an absurdly long fruit", {"fruits": ["a" * 10_000]}, "Fruit 1 is too long: at most 64 characters."),
    ("a fruit with control characters", {"fruits": ["apple\u0000"]},
     'Fruit 1 ("apple\\u0000") must start with a letter or a digit and hold only letters, digits, spaces and '
     ". ' - _."),
    ("an unknown field", {"fruits": ["apple"], "sugar": True}, "body.sugar: Extra inputs are not permitted"),
    ("no fruits field", {"fruit": ["apple"]}, "Choose at least one fruit."),
    ("fruits not a list", {"fruits": "apple"}, "The fruits must be a list of names."),
    ("a priority out of range", {"fruits": ["apple"], "priority": 1000},
     "Priority must be a whole number from -100 to 100."),
    ("a priority given as a string", {"fruits": ["apple"], "priority": "5"}, "Priority must be a whole number"),
    ("a priority given as a boolean", {"fruits": ["apple"], "priority": True}, "Priority must be a whole number"),
    ("a fruit made of combining marks only", {"fruits": ["\u0301\u0301"]}, "Fruit 1 ("),
    ("a fruit made of a zero-width joiner", {"fruits": ["\u200d"]}, "Fruit 1 ("),
    ("a fruit hiding a zero-width space", {"fruits": ["ki\u200bwi"]}, "Fruit 1 ("),
]


@pytest.mark.parametrize("body,expected", [(b, e) for _, b, e in BAD_ORDERS], ids=[n for n, _, _ in BAD_ORDERS])
def test_a_bad_order_gets_a_4xx_naming_the_problem_and_stores_nothing(api, stack, body, expected):
    before = stored_orders(stack)

    response = api.post("/v1/orders", json=body)

    assert response.status_code == 422
    assert expected in response.json()["message"]
    assert all("loc" in error for error in response.json()["detail"])  # programs still get each error's field
    assert stored_orders(stack) == before


def test_a_fruit_typed_with_a_combining_accent_is_stored_as_one_character(api):
    """"é" as e + U+0301 and as U+00E9 look the same: they are one name."""
    created = api.post("/v1/orders", json={"fruits": ["pe\u0301che", "p\u00eache"]}).json()

    assert created["fruits"] == ["p\u00e9che", "p\u00eache"]


def test_masters_reports_with_times_out_of_range_get_a_4xx(stack):
    """A time past year 9999 once converted to UTC overflowed into a 500."""
    headers = {"Authorization": f"Bearer {stack.tokens['master']}"}
    for finished_at, expected in [("9999-12-31T23:59:59-14:00", "between 2000 and 9000"),
                                  ("1970-01-01T00:00:00Z", "between 2000 and 9000"),
                                  ("2026-01-01T12:00:00", "UTC offset")]:
        report = {"order_id": 1, "version": 1, "status": "completed", "finished_at": finished_at}
        response = httpx.post(f"{stack.shared_url}/internal/v1/orders/reports", json={"reports": [report]},
                              headers=headers, timeout=10)
        assert response.status_code == 422, response.text
        assert "finished_at" in response.json()["message"] and expected in response.json()["message"]


def test_malformed_json_gets_a_4xx_naming_the_problem(api, stack):
    before = stored_orders(stack)

    response = api.post("/v1/orders", content=b'{"fruits": ["apple",', headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert "JSON" in response.json()["message"]
    assert stored_orders(stack) == before


@pytest.mark.parametrize("path,status,expected", [
    ("/v1/orders/999999", 404, "order 999999 not found"),
    ("/v1/orders/banana", 422, "order_id"),
    ("/v1/orders?status=cooking", 422, "status"),
    ("/v1/orders?limit=0", 422, "limit"),
])
def test_bad_reads_get_a_4xx_naming_the_problem(api, path, status, expected):
    response = api.get(path)

    assert response.status_code == status
    body = response.json()
    assert expected in (body.get("message") or body["detail"])


def test_the_seed_create_task_route_refuses_bad_fruits_and_stores_nothing(api, stack):
    before = stored_orders(stack)

    empty = api.post("/create_task/", json=[])
    assert empty.status_code == 422 and "at least 1" in empty.json()["message"]
    schema = api.get("/openapi.json").json()["paths"]["/create_task/"]["post"]["requestBody"]
    assert schema["content"]["application/json"]["schema"]["minItems"] == 1, "the schema says what is refused"
    assert api.post("/create_task/", json=[{"fruit": ""}]).status_code == 422
    assert api.post("/create_task/", json=[{"name": "apple"}]).status_code == 422
    assert stored_orders(stack) == before


def test_a_body_over_the_limit_gets_413_whether_announced_or_streamed(api, stack):
    before = stored_orders(stack)
    huge = b'{"fruits": ["' + b"a" * 2_000_000 + b'"]}'

    announced = api.post("/v1/orders", content=huge, headers={"content-type": "application/json"})
    streamed = api.post("/v1/orders", content=iter([huge[:1_000_000], huge[1_000_000:]]),
                        headers={"content-type": "application/json"})

    for response in (announced, streamed):
        assert response.status_code == 413
        assert "request body larger than 1048576 bytes" in response.json()["message"]
    assert stored_orders(stack) == before


def test_the_limits_an_order_is_checked_against_are_read_from_the_settings(api):
    assert api.get("/v1/limits").json() == {"max_fruits": 10, "max_fruit_length": 64, "min_priority": -100,
                                            "max_priority": 100}


def test_orders_are_searched_by_fruit_a_page_at_a_time(api):
    figs = [api.post("/v1/orders", json={"fruits": ["apple", "sea fig"] if i % 2 else ["plum"]}).json()["id"]
            for i in range(7)][1::2]

    first = api.get("/v1/orders", params={"fruit": "sea fig", "limit": 2}).json()
    second = api.get(first["next"]).json()

    assert "fruit=sea+fig" in first["next"] and second["next"] is None
    assert [o["id"] for o in first["items"] + second["items"]] == figs[::-1]
    assert api.get("/v1/orders", params={"fruit": "sea fig", "status": "completed"}).json()["items"] == []


def test_a_salads_story_tells_each_fruit_from_the_queue(api, stack):
    created = api.post("/v1/orders", json={"fruits": ["kiwi", "lime"]}).json()
    # No worker here: Master splits the order, and its fruits wait in the queue.
    story = wait_until(lambda: (s := api.get(f"/v1/orders/{created['id']}/story").json())["fruits"] and s, 10)

    assert story["order"]["id"] == created["id"] and story["fruits_unavailable"] is False
    assert [(f["fruit"], f["state"], f["started_at"], f["failures"]) for f in story["fruits"]] == [
        ("kiwi", "queued", None, []), ("lime", "queued", None, [])]
    assert all(f["queued_at"] and f["max_attempts"] >= 1 for f in story["fruits"])
    assert api.get("/v1/orders/999999/story").status_code == 404


def test_requeueing_an_order_without_failed_fruits_is_refused_in_words(api):
    created = api.post("/v1/orders", json={"fruits": ["kiwi"]}).json()

    refused = api.post(f"/v1/orders/{created['id']}/requeue")
    unknown = api.post("/v1/orders/999999/requeue")

    assert refused.status_code == 409
    assert refused.json()["message"] == f"order {created['id']} has no failed fruit to queue again"
    assert unknown.status_code == 404 and unknown.json()["message"] == "order 999999 not found"


def test_the_charts_sample_the_queue_and_slots_from_master(api):
    charts = wait_until(lambda: (c := api.get("/v1/charts").json())["load"] and c, 15)

    assert charts["window_minutes"] == 10 and charts["minutes"] == []  # nothing finished without workers
    assert charts["load"][-1]["slots"] == 0 and charts["load"][-1]["queued"] >= 0
