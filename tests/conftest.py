"""Fixtures that build real things: a PostgreSQL cluster, migrated databases, running local stacks."""

import itertools
import os
import re

import pytest
from salad.cli import client
from salad.cli.stack import LocalStack
from salad.core.migrate import upgrade

from tests.helpers import wait_final
from tests.postgres import PostgresCluster, create_database

TEMPLATE = "salad_template"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster():
    """The throwaway PostgreSQL cluster, or None when SALAD_TEST_DATABASE_URL names an existing server."""
    if os.environ.get("SALAD_TEST_DATABASE_URL"):
        yield None
        return
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_admin_url(postgres_cluster):
    """The admin URL of the PostgreSQL server the tests use."""
    return postgres_cluster.admin_url if postgres_cluster else os.environ["SALAD_TEST_DATABASE_URL"]


@pytest.fixture
def restartable_postgres(postgres_cluster):
    """The cluster, for tests that stop and restart PostgreSQL itself."""
    if postgres_cluster is None:
        pytest.skip("PostgreSQL is external (SALAD_TEST_DATABASE_URL): it cannot be restarted here")
    return postgres_cluster


@pytest.fixture(scope="session")
def migrated_template(postgres_admin_url):
    """A database migrated once; every test gets a cheap copy of it."""
    upgrade(create_database(postgres_admin_url, TEMPLATE))
    return TEMPLATE


@pytest.fixture
def postgres_url(postgres_admin_url, migrated_template, request):
    """A fresh, migrated PostgreSQL database for this test."""
    name = re.sub(r"\W", "_", request.node.name)[:40].lower() + f"_{next(_database_numbers)}"
    return create_database(postgres_admin_url, name, template=migrated_template)


@pytest.fixture
def make_stack(tmp_path):
    """Start local stacks (Shared, Master, workers as processes); all are stopped after the test."""
    stacks: list[LocalStack] = []

    def start(database_url: str, **options) -> LocalStack:
        options.setdefault("log_dir", tmp_path / f"logs-{len(stacks) + 1}")
        stack = LocalStack(database_url, **options)
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in stacks:
        stack.stop()


class ObservedStack:
    """A running stack as the observability tests see it: URLs, plus order-and-wait helpers."""

    def __init__(self, stack: LocalStack, masters: list) -> None:
        self.stack = stack
        self.shared_url = stack.shared_url
        self.master_url = stack.master_url
        self.master_urls = [m.url for m in masters]
        self.worker_urls = [w.url for w in stack.worker_services]
        self.database_url = stack.database_url

    def order(self, fruits: list[str]) -> int:
        return client.order(self.shared_url, self.stack.client_token, fruits)["id"]

    def wait(self, order_id: int, timeout: float = 60) -> dict:
        return wait_final(self.stack, order_id, timeout)


@pytest.fixture(params=["one-master", "two-masters"])
def local_stack(request, make_stack, postgres_url):
    """A stack with two workers, with one Master or two replicas on the same database."""
    stack = make_stack(postgres_url, workers=2, slots=2, time_scale=0.05,
                       env={"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"})
    masters = [stack.find("master")]
    if request.param == "two-masters":
        masters.append(stack.add_master())
    return ObservedStack(stack, masters)
