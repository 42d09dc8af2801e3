"""GET /v1/events and /v1/dashboard over HTTP: events on change, resuming, replicas, disconnect, shutdown."""

import json
import signal
import time

import httpx
import pytest
from salad.cli.stack import free_port
from salad.cli.watch import parse_events

from tests.helpers import order, wait_final, wait_until

STREAM_TIMEOUT = httpx.Timeout(10.0, read=10.0)  # below the 15 s heartbeat: a stuck stream fails the test
QUIET = httpx.Timeout(10.0, read=2.0)  # when no event is expected


def open_stream(client: httpx.Client, **headers: str):
    return client.stream("GET", "/v1/events", headers=headers)


def snapshots_until(events, predicate, timeout: float = 20) -> dict:
    """Read `snapshot` events until one satisfies `predicate`; return it."""
    deadline = time.monotonic() + timeout
    for event in events:
        if event.event == "keepalive":  # every 15 s, when nothing else came
            continue
        assert event.event == "snapshot"
        snapshot = json.loads("\n".join(event.data))
        if predicate(snapshot):
            return snapshot
        assert time.monotonic() < deadline, "no such snapshot in time"
    raise AssertionError("the stream ended")


def client_of(stack, url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=stack.client_headers, timeout=STREAM_TIMEOUT)


@pytest.fixture
def api(stack):
    with client_of(stack, stack.shared_url) as client:
        yield client


def test_a_snapshot_comes_at_once_then_one_per_change_until_the_salad_is_done(stack, api):
    with open_stream(api) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_events(response.iter_lines())
        first = next(events)
        snapshot = json.loads("\n".join(first.data))
        assert first.event == "snapshot" and first.id and first.retry == 1000
        assert snapshot["open_orders"] == [] and snapshot["completed"] == 0 and snapshot["recent"] == []
        assert [(w["name"], w["slots"]) for w in snapshot["workers"]] == [("worker-1", 2), ("worker-2", 2)]

        placed = order(stack, ["apple", "kiwi", "mango", "pear", "plum"])
        running = snapshots_until(events, lambda s: any(
            f["state"] == "running" for o in s["open_orders"] for f in o["fruits"]))
        done = snapshots_until(events, lambda s: s["completed"] == 1)

    salad = running["open_orders"][0]
    assert salad["id"] == placed["id"] and [f["fruit"] for f in salad["fruits"]] == placed["fruits"]
    assert {f["worker"] for f in salad["fruits"] if f["state"] == "running"} <= {"worker-1", "worker-2"}
    assert sum(w["busy"] for w in running["workers"]) == salad["counts"]["running"] > 0
    assert done["open_orders"] == [] and done["recent"][0]["id"] == placed["id"]
    assert done["recent"][0]["preparation_time"] > 0 and done["recent"][0]["fruits"] == 5
    assert api.get("/v1/dashboard").json() == done


def test_reconnecting_with_the_last_event_id_repeats_nothing_and_replicas_agree(stack, api):
    with open_stream(api) as response:
        first = next(parse_events(response.iter_lines()))
    second_shared = stack.spawn("shared-2", "shared", free_port(), stack.find("shared").extra_env)  # same Master
    try:
        stack.wait_ready([second_shared])
        with client_of(stack, second_shared.url) as other:
            assert other.get("/v1/dashboard").json() == api.get("/v1/dashboard").json()
            with open_stream(other) as response:  # the id is a digest of the content: equal on every replica
                assert next(parse_events(response.iter_lines())).id == first.id
            resume = {"Last-Event-ID": first.id}
            with other.stream("GET", "/v1/events", headers=resume, timeout=QUIET) as response:
                lines = response.iter_lines()
                with pytest.raises(httpx.ReadTimeout):  # nothing changed: no event (a heartbeat every 15 s)
                    next(lines)
    finally:
        stack.stop_service(second_shared)
        stack.services.remove(second_shared)


def events_answered(stack) -> float:
    metrics = httpx.get(f"{stack.shared_url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("salad_http_requests_total{") and 'route="/v1/events"' in line)


def test_streams_need_a_token_and_end_on_the_server_when_their_client_leaves(stack, api):
    assert httpx.get(f"{stack.shared_url}/v1/dashboard").status_code == 401
    assert httpx.get(f"{stack.shared_url}/v1/events", timeout=5).status_code == 401
    url, query = f"{stack.shared_url}/v1/events", {"access_token": stack.client_token}  # as the page sends it
    with httpx.stream("GET", url, params=query, timeout=STREAM_TIMEOUT) as response:
        assert response.status_code == 200
        assert next(parse_events(response.iter_lines())).event == "snapshot"

    before = events_answered(stack)
    with open_stream(api) as response:
        next(parse_events(response.iter_lines()))
    # A request is counted when its response ends: the stream's end on the server side.
    wait_until(lambda: events_answered(stack) == before + 1, timeout=5, message="stream ended on the server")
    final = wait_final(stack, order(stack, ["fig"])["id"], timeout=20)  # Shared still serves
    assert final["status"] == "completed"


def test_open_streams_do_not_hold_up_a_shutdown(stack, api):
    with open_stream(api) as response, open_stream(api) as other:
        lines, other_lines = response.iter_lines(), other.iter_lines()
        next(parse_events(lines)), next(parse_events(other_lines))
        started = time.monotonic()
        code = stack.stop_service(stack.find("shared"))
        took = time.monotonic() - started
        ended_by_server(lines), ended_by_server(other_lines)

    assert took < 5, f"Shared took {took:.1f}s to stop with two open streams"
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM once it has shut down
    assert "Application shutdown complete" in stack.find("shared").log_path.read_text()


def ended_by_server(lines) -> None:
    """Read to the end: the server closed the stream (cleanly or not), so this returns instead of hanging."""
    try:
        for _ in lines:
            pass
    except httpx.RemoteProtocolError:
        pass


def test_an_idle_stream_sends_a_keepalive_event_the_page_can_see(stack):
    """A comment would keep proxies from closing the stream, but EventSource hides comments: the page could
    not tell a quiet stream from a dead one. The keep-alive is an event, without an id (a client resuming
    keeps its last snapshot's)."""
    with httpx.Client(base_url=stack.shared_url, headers=stack.client_headers,
                      timeout=httpx.Timeout(10.0, read=20.0)) as client, open_stream(client) as response:
        events = parse_events(response.iter_lines())
        first = next(events)
        started = time.monotonic()
        keepalive = next(events)

    assert first.event == "snapshot"
    assert keepalive.event == "keepalive" and keepalive.id is None
    assert json.loads("\n".join(keepalive.data)) == {"every": 15}
    assert 13 < time.monotonic() - started < 18
