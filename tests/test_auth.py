"""Every route of Shared and Master lets the right token through and refuses every other credential (none,
malformed, another kind's token, a wrong value) with 401 or 403, never a 500 (walks each app's OpenAPI route
table, so a new route cannot be left open by mistake), and tokens never reach the logs."""

import re
import secrets

import httpx
import pytest
from salad.cli.stack import LocalStack
from salad.cli.watch import parse_events
from salad.core.auth import bearer_header
from salad.core.settings import master_settings, shared_settings
from salad.master.app import build_app as build_master
from salad.shared.app import build_app as build_shared

from tests.postgres import create_database

OPEN = {"/healthz", "/readyz", "/metrics", "/v1/stats", "/", "/static"}  # probes, scraping, the page shell
ROLE_OF_PREFIX = [  # (service, path pattern, the roles that may call it, "|" between two)
    ("shared", r"^/internal/", "master"),
    ("shared", r"^/", "client"),
    # Shared reads what it shows of tasks, and asks a salad's requeue, with the master token
    ("master", r"^/v1/(progress|tasks|orders/\{order_id\}/requeue)$", "client|master"),
    ("master", r"^/v1/(tasks/\{task_id\}/(heartbeat|result|release)|tasks/(claim|exchange)|workers/\{name\})$", "worker"),
    ("master", r"^/(send_task|result)$", "worker"),
    ("master", r"^/", "client"),
]
KNOWN_ROLES = {"shared": ("client", "master"), "master": ("client", "worker", "master")}  # the tokens it holds


def protected_routes(app, service: str) -> list[tuple[str, str, str, bool]]:
    """(method, path, role, takes ?access_token=) of every operation in the app's OpenAPI schema that is not
    open."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path in OPEN or path.startswith("/static"):
            continue
        for method, operation in operations.items():
            role = next(r for s, pattern, r in ROLE_OF_PREFIX if s == service and re.search(pattern, path))
            if path == "/v1/workers/{name}" and method == "get":
                role = "client"
            in_query = any(p["name"] == "access_token" and p["in"] == "query"
                           for p in operation.get("parameters", []))
            found.append((method.upper(), path, role, in_query))
    return found


@pytest.fixture(scope="module")
def stack(postgres_admin_url, migrated_template, tmp_path_factory):
    url = create_database(postgres_admin_url, "auth_routes", template=migrated_template)
    debug = {"SALAD_LOG_LEVEL": "DEBUG"}  # the most they log: test_tokens_never_appear_in_the_logs reads it
    with LocalStack(url, workers=0, env=debug, log_dir=tmp_path_factory.mktemp("logs")) as running:
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


def credentials(tokens: dict[str, str]) -> list[tuple[str, str | bytes | None]]:
    """(what, Authorization header) for every kind of credential a caller may present: none, malformed ones,
    the token of each role, and a wrong value."""
    client = tokens["client"]
    return [
        ("none", None),
        ("scheme alone", "Bearer"),
        ("no scheme", client),
        ("another scheme", f"Basic {client}"),
        ("a token and more", f"Bearer {client} {client}"),
        ("not UTF-8", b"Bearer \xff\xfe"),
        *[(role, f"Bearer {token}") for role, token in tokens.items()],
        ("wrong value", f"Bearer {client[:-1]}{'A' if client[-1] != 'A' else 'B'}"),
    ]


def expected(what: str, role: str, service: str) -> str:
    """What presenting `what` to a route for `role` must get: through, 401 or 403."""
    if what in role.split("|"):
        return "through"
    return "403" if what in KNOWN_ROLES[service] else "401"


@pytest.mark.parametrize("service,method,path,role,in_query", cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_kind_of_credential_gets_the_right_answer_never_a_500(stack, service, method, path, role,
                                                                    in_query):
    url = stack.find(service).url + concrete(path)

    def send(header: str | bytes | None = None, query: str | None = None) -> httpx.Response:
        """Status and headers only: an event stream answered 200 would never end."""
        headers = {"Authorization": header} if header is not None else {}
        params = {"access_token": query} if query is not None else {}
        with httpx.stream(method, url, headers=headers, params=params, json={}, timeout=10) as response:
            if response.status_code >= 400:
                response.read()
            return response

    attempts = [(f"{what} in the header", header, None, expected(what, role, service))
                for what, header in credentials(stack.tokens)]
    if in_query:  # as the page's EventSource sends it
        attempts += [(f"{what} as ?access_token=", None, header.split(" ", 1)[1],
                      expected(what, role, service))
                     for what, header in credentials(stack.tokens)
                     if isinstance(header, str) and header.startswith("Bearer ") and " " not in header[7:]]
        attempts.append(("an empty ?access_token=", None, "", "401"))

    wrong = []
    for what, header, query, outcome in attempts:
        response = send(header, query)
        code = response.status_code
        if outcome == "through":
            ok = code not in (401, 403) and code < 500
        elif outcome == "401":
            ok = code == 401 and response.headers.get("www-authenticate") == "Bearer"
        else:
            ok = code == 403 and f"needs a {role.replace('|', ' or ')} token" in response.json()["message"]
        if not ok:
            wrong.append(f"{what}: {code} (expected {outcome}) {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("service", ["shared", "master"])
def test_probes_metrics_and_stats_stay_open(stack, service):
    base = stack.find(service).url
    for path in ("/healthz", "/readyz", "/metrics") + (("/v1/stats",) if service == "master" else ()):
        assert httpx.get(base + path, timeout=10).status_code == 200, path


def test_tokens_never_appear_in_the_logs(stack):
    """Not in the Authorization header, nor as `?access_token=` (the page's EventSource puts its token in the
    URL), right or wrong, on routes that take it or not: the services log at DEBUG here."""
    wrong = f"not-a-token-{secrets.token_urlsafe(16)}"  # a wrong value may be someone's mistyped token
    presented = [*stack.tokens.values(), wrong]
    for token in presented:
        httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["apple"]}, headers=bearer_header(token))
        query = {"access_token": token}
        with httpx.stream("GET", f"{stack.shared_url}/v1/events", params=query, timeout=10) as response:
            if token == stack.client_token:
                assert response.status_code == 200
                assert next(parse_events(response.iter_lines())).event == "snapshot"  # served, not refused
        for url in (f"{stack.shared_url}/v1/dashboard", f"{stack.shared_url}/v1/orders?limit=0",
                    f"{stack.shared_url}/no/such/route", f"{stack.master_url}/v1/tasks"):
            httpx.get(url, params=query, timeout=10)
    logs = "".join(s.log_path.read_text() for s in stack.services)

    assert '"level": "DEBUG"' in logs, "the services logged at DEBUG"
    for token in presented:
        assert token not in logs
