"""Readiness means "can serve": Shared and Master started on a database that is not migrated yet answer
/readyz 503 (and every request 503 with Retry-After, never 500) until `salad migrate` runs; migrators started
together take turns; `salad migrate --wait` waits for a database that is still starting."""

import os
import subprocess
import sys
import threading
import time

import httpx
from salad.cli.stack import LocalStack, free_port
from salad.core.db import make_engine, sqlalchemy_url
from salad.core.migrate import known_revisions, schema_is_current, upgrade
from sqlalchemy import text

from tests.helpers import order, wait_final, wait_until
from tests.postgres import create_database


def migrate_env(url: str) -> dict[str, str]:
    """A bare environment for `salad migrate`, but PYTHONPATH kept: it migrates with the code under test (and
    its migrations), not with another installed copy of salad."""
    return {"PATH": "/usr/bin:/bin", "SALAD_DATABASE_URL": url,
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}


def answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def every_route(base_url: str, tokens: dict[str, str]) -> list[tuple[str, str, int]]:
    """(method, path, status) of every route of the service's OpenAPI, called with each kind of token and
    a small valid-looking body: what a client of any kind may send while the schema is missing."""
    spec = httpx.get(f"{base_url}/openapi.json", timeout=5).json()
    bodies = {"/v1/orders": {"fruits": ["kiwi"]}, "/create_task/": [{"fruit": "kiwi"}],
              "/v1/tasks/exchange": {"worker": "w1", "max_tasks": 1}, "/v1/tasks/claim": {"worker": "w1"},
              "/send_task": {"nom_worker": "w1"}}
    seen = []
    for path, methods in spec["paths"].items():
        if path.startswith("/v1/events"):
            continue  # a stream: it answers 200 and reports the outage in its events
        concrete = path.replace("{order_id}", "1").replace("{task_id}", "1").replace("{name}", "w1")
        for method in methods:
            for token in tokens.values():
                response = httpx.request(method.upper(), base_url + concrete, json=bodies.get(path, {}),
                                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
                seen.append((method.upper(), path, response.status_code))
    return seen


def test_services_are_ready_only_once_the_schema_is_migrated(postgres_admin_url, tmp_path):
    url = create_database(postgres_admin_url, "not_migrated_yet")
    stack = LocalStack(url, workers=0, time_scale=0.02, log_dir=tmp_path)
    try:
        shared = stack.spawn("shared", "shared", free_port(), {})
        master = stack.spawn("master", "master", free_port(), {"SALAD_SHARED_URL": shared.url})
        for service in (shared, master):
            wait_until(lambda s=service: answers(s.url), 60, message=f"{service.name} answers")

        for service in (shared, master):
            probe = httpx.get(f"{service.url}/readyz", timeout=5)
            assert probe.status_code == 503, f"{service.name} is ready without a schema"
            assert probe.headers["Retry-After"]
            calls = every_route(service.url, stack.tokens)
            assert not [c for c in calls if c[2] >= 500 and c[2] != 503], f"{service.name}: {calls}"
        placed = httpx.post(f"{shared.url}/v1/orders", json={"fruits": ["kiwi"]}, headers=stack.client_headers)
        assert placed.status_code == 503 and placed.headers["Retry-After"], placed.text
        assert "not migrated" in placed.json()["message"]

        migrated = subprocess.run([sys.executable, "-m", "salad", "migrate"], env=migrate_env(url),
                                  capture_output=True, text=True)
        assert migrated.returncode == 0, migrated.stderr
        stack.wait_ready([shared, master], timeout=30)

        stack.add_worker()
        final = wait_final(stack, order(stack, ["kiwi", "plum"])["id"], timeout=90)
        assert final["status"] == "completed", final
    finally:
        stack.stop()


def test_the_schema_is_current_at_this_codes_head_or_newer(postgres_admin_url):
    url = create_database(postgres_admin_url, "schema_versions")
    engine = make_engine(sqlalchemy_url(url))
    try:
        assert not schema_is_current(engine), "an empty database"
        upgrade(url, "0003")
        assert not schema_is_current(engine), "a schema behind this code"
        upgrade(url)
        assert schema_is_current(engine)
        with engine.begin() as conn:  # a later release migrated further: old pods keep serving
            conn.execute(text("UPDATE alembic_version SET version_num = 'from_a_newer_release'"))
        assert schema_is_current(engine)
    finally:
        engine.dispose()
    unreachable = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/salad")
    assert not schema_is_current(unreachable)
    unreachable.dispose()


def test_migrators_started_together_take_turns(postgres_admin_url):
    """Every Shared and Master pod migrates as it starts: the advisory lock makes the second one wait,
    then find nothing to do (without it, both create the same tables and one fails)."""
    url = create_database(postgres_admin_url, "migrated_together")
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    engine = make_engine(sqlalchemy_url(url))
    try:
        assert schema_is_current(engine)
        with engine.connect() as conn:
            assert set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars()) == \
                set(known_revisions()[1])
    finally:
        engine.dispose()


def test_migrate_waits_for_a_database_that_is_still_starting(restartable_postgres, postgres_admin_url):
    url = create_database(postgres_admin_url, "starting_late")
    restartable_postgres.stop()
    try:
        started = time.monotonic()
        migrating = subprocess.Popen([sys.executable, "-m", "salad", "migrate", "--wait", "60"],
                                     env=migrate_env(url),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        assert migrating.poll() is None, migrating.communicate()[0]
    finally:
        restartable_postgres.start_server()
    output, _ = migrating.communicate(timeout=60)
    assert migrating.returncode == 0, output
    assert "waiting for the database" in output and "up to date" in output
    assert time.monotonic() - started >= 3


def test_migrate_gives_up_after_its_wait(postgres_admin_url):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_here"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "salad", "migrate", "--wait", "2"],
                            env=migrate_env(url), capture_output=True, text=True)
    assert result.returncode != 0
    assert time.monotonic() - started >= 2
