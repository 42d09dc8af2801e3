"""Every route of Shared and Master refuses callers without the right token (walks each app's OpenAPI
route table, so a new route cannot be left open by mistake), and tokens never reach the logs."""

import re

import httpx
import pytest
from salad.cli.stack import LocalStack
from salad.core.settings import master_settings, shared_settings
from salad.master.app import build_app as build_master
from salad.shared.app import build_app as build_shared

from tests.postgres import create_database

OPEN = {"/healthz", "/readyz", "/metrics", "/v1/stats", "/", "/static"}  # probes, scraping, the page shell
ROLE_OF_PREFIX = [  # (service, path pattern, the roles that may call it, "|" between two)
    ("shared", r"^/internal/", "master"),
    ("shared", r"^/", "client"),
    ("master", r"^/v1/progress$", "client|master"),  # Shared reads what it shows of tasks with the master token
    ("master", r"^/v1/(tasks/\{task_id\}/(heartbeat|result|release)|tasks/(claim|exchange)|workers/\{name\})$", "worker"),
    ("master", r"^/(send_task|result)$", "worker"),
    ("master", r"^/", "client"),
]


def protected_routes(app, service: str) -> list[tuple[str, str, str]]:
    """(method, path, role) of every operation in the app's OpenAPI schema that is not open."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path in OPEN or path.startswith("/static"):
            continue
        for method in operations:
            role = next(r for s, pattern, r in ROLE_OF_PREFIX if s == service and re.search(pattern, path))
            if path == "/v1/workers/{name}" and method == "get":
                role = "client"
            found.append((method.upper(), path, role))
    return found


@pytest.fixture(scope="module")
def stack(postgres_admin_url, migrated_template, tmp_path_factory):
    url = create_database(postgres_admin_url, "auth_routes", template=migrated_template)
    with LocalStack(url, workers=0, log_dir=tmp_path_factory.mktemp("logs")) as running:
        yield running


def cases():
    # The apps are built for their route tables only, never started: their database is never reached.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SALAD_DATABASE_URL", "postgresql://salad@127.0.0.1:1/never_reached")
        shared = protected_routes(build_shared(), "shared")
        master = protected_routes(build_master(), "master")
    shared_settings.cache_clear()
    master_settings.cache_clear()
    assert len(shared) >= 8 and len(master) >= 10, "the route tables were read"
    return [("shared", *r) for r in shared] + [("master", *r) for r in master]


def concrete(path: str) -> str:
    return path.replace("{order_id}", "1").replace("{task_id}", "1").replace("{name}", "w1")


@pytest.mark.parametrize("service,method,path,role", cases(), ids=lambda v: v if isinstance(v, str) else None)
def test_a_protected_route_refuses_missing_unknown_and_wrong_kind_tokens(stack, service, method, path, role):
    url = stack.find(service).url + concrete(path)
    known = ("client", "master") if service == "shared" else ("client", "worker", "master")
    roles = role.split("|")
    wrong_role = next(r for r in known if r not in roles)  # a token the service knows, of another kind

    def send(token: str | None) -> httpx.Response:
        """Status and headers only: an event stream answered 200 would never end."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.stream(method, url, headers=headers, json={}, timeout=10) as response:
            if response.status_code >= 400:
                response.read()
            return response

    missing, unknown, wrong = send(None), send("not-a-token"), send(stack.tokens[wrong_role])
    rights = [send(stack.tokens[r]) for r in roles]

    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert unknown.status_code == 401
    assert wrong.status_code == 403 and f"needs a {' or '.join(roles)} token" in wrong.json()["message"]
    for right in rights:
        assert right.status_code not in (401, 403), right.text


@pytest.mark.parametrize("service", ["shared", "master"])
def test_probes_metrics_and_stats_stay_open(stack, service):
    base = stack.find(service).url
    for path in ("/healthz", "/readyz", "/metrics") + (("/v1/stats",) if service == "master" else ()):
        assert httpx.get(base + path, timeout=10).status_code == 200, path


def test_tokens_never_appear_in_the_logs(stack):
    httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["apple"]}, headers=stack.client_headers)
    httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["apple"]},
               headers={"Authorization": f"Bearer {stack.tokens['worker']}"})
    logs = "".join(s.log_path.read_text() for s in stack.services)

    assert logs, "the services wrote logs"
    for token in stack.tokens.values():
        assert token not in logs
