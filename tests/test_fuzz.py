"""Schemathesis against the OpenAPI schema of each service, over real HTTP with the right tokens:
no 5xx, no 401 or 403 (each route gets its own kind of token), and every response matches the schema
(status code, content type, body)."""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from salad.cli.stack import LocalStack
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.postgres import create_database


def token_accepted(_ctx, response, case) -> None:
    """A valid case carries its route's token, and gets past it: with a wrong token, every case would test the
    refusal alone. (Invalid cases may leave the Authorization header out.)"""
    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        assert response.status_code not in (401, 403), f"{case.operation.label}: {response.text}"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          token_accepted]
STREAMS = "/v1/events"  # an event stream never ends: the web page tests cover it
FUZZ_ENV = {"SALAD_MAX_CLAIM_WAIT": "0", "SALAD_INTAKE_INTERVAL": "0.2", "SALAD_OUTBOX_INTERVAL": "0.2",
            "SALAD_EXECUTION_TIME_MIN": "0", "SALAD_EXECUTION_TIME_MAX": "1"}
FUZZ_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def stack(postgres_admin_url, migrated_template, tmp_path_factory):
    url = create_database(postgres_admin_url, "fuzzing", template=migrated_template)
    with LocalStack(url, workers=1, time_scale=0.01, env=FUZZ_ENV, log_dir=tmp_path_factory.mktemp("logs")) as s:
        order = httpx.post(f"{s.shared_url}/v1/orders", json={"fruits": ["apple", "kiwi"]}, headers=s.client_headers)
        assert order.status_code == 201  # something to find: order 1 and its tasks exist
        yield s


TOKEN_FOR = {"shared": "client", "master": "worker", "worker": None}
WORKER_ROUTES = {"/v1/tasks/claim", "/v1/tasks/exchange", "/v1/tasks/{task_id}/heartbeat",
                 "/v1/tasks/{task_id}/result", "/v1/tasks/{task_id}/release", "/v1/workers/{name}",
                 "/send_task", "/result"}  # Master's routes for workers; the others are the clients'


def load(stack, service: str):
    url = stack.find(service).url if service != "worker" else stack.worker_services[0].url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.update(base_url=url)
    return schema.exclude(path=STREAMS)


def tokens(stack, service: str, path: str) -> dict[str, str]:
    """The token of the route's kind of caller (clients read Master's operator routes)."""
    role = TOKEN_FOR[service]
    if service == "shared" and path.startswith("/internal/"):
        role = "master"
    if service == "master" and path not in WORKER_ROUTES:
        role = "client"
    return {"Authorization": f"Bearer {stack.tokens[role]}"} if role else {}


def fuzz(stack, service: str) -> list[str]:
    """Run every operation of the service's schema with valid and invalid data; returns the operations."""
    schema = load(stack, service)
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(mode))
            def check(case):
                case.call_and_validate(headers=tokens(stack, service, case.path), checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE, operation.label  # nothing in it can be made invalid
    return [operation.label for operation in operations]


def test_shared_api(stack):
    assert "POST /v1/orders" in fuzz(stack, "shared")


def test_master_api(stack):
    operations = fuzz(stack, "master")
    assert {"POST /v1/tasks/claim", "POST /v1/tasks/exchange"} <= set(operations)
    assert {path for path in load(stack, "master").raw_schema["paths"]} >= WORKER_ROUTES


def test_worker_probes(stack):
    assert "GET /readyz" in fuzz(stack, "worker")
