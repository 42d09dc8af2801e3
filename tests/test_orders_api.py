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


BAD_ORDERS = [
    ("empty order", {"fruits": []}, "fruits"),
    ("more fruits than the limit", {"fruits": ["apple"] * 11}, "at most 10 fruits"),
    ("a fruit that is not a string", {"fruits": ["apple", 42]}, "fruits.1"),
    ("an empty fruit", {"fruits": ["apple", "  "]}, "fruits.1"),
    ("an absurdly long fruit", {"fruits": ["a" * 10_000]}, "at most 64 characters"),
    ("a fruit with control characters", {"fruits": ["apple\u0000"]}, "fruits.0"),
    ("an unknown field", {"fruits": ["apple"], "sugar": True}, "sugar"),
    ("no fruits field", {"fruit": ["apple"]}, "fruits"),
    ("fruits not a list", {"fruits": "apple"}, "fruits"),
    ("a priority out of range", {"fruits": ["apple"], "priority": 1000}, "priority"),
]


@pytest.mark.parametrize("body,expected", [(b, e) for _, b, e in BAD_ORDERS], ids=[n for n, _, _ in BAD_ORDERS])
def test_a_bad_order_gets_a_4xx_naming_the_problem_and_stores_nothing(api, stack, body, expected):
    before = stored_orders(stack)

    response = api.post("/v1/orders", json=body)

    assert response.status_code == 422
    assert expected in response.json()["message"]
    assert stored_orders(stack) == before


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

    assert api.post("/create_task/", json=[]).status_code == 422
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
