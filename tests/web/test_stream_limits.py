"""GET /v1/events is bounded per process, in all and per token: past a bound a stream gets 503 with
Retry-After and a message naming the setting; a stream that ends gives its place back."""

import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from salad.cli.stack import LocalStack, free_port
from salad.cli.watch import parse_events, snapshots
from salad.core.auth import bearer_header

from tests.helpers import wait_until

LIMITS = {"SALAD_MAX_EVENT_STREAMS": "3", "SALAD_MAX_EVENT_STREAMS_PER_TOKEN": "2"}
# Authentication off, so that two tokens can be told apart: a Shared knows a single client token.
NO_TOKENS = {"SALAD_CLIENT_TOKEN": "", "SALAD_MASTER_TOKEN": "", "SALAD_WORKER_TOKEN": ""}
TIMEOUT = httpx.Timeout(10.0, read=10.0)


@pytest.fixture
def shared_url(postgres_url):
    """Shared alone, with small limits."""
    stack = LocalStack(postgres_url, workers=0, env={**NO_TOKENS, **LIMITS}, log_dir=Path(tempfile.mkdtemp()))
    shared = stack.spawn("shared", "shared", free_port(), {})
    try:
        stack.wait_ready([shared])
        yield shared.url
    finally:
        stack.stop()


def open_stream(streams: ExitStack, url: str, token: str, in_query: bool = False) -> httpx.Response:
    """A stream opened with `token` (in the Authorization header, or as the page sends it); an answered stream
    is read up to its first event, so it is counted on the server when this returns. (Its events are kept
    on it: a line iterator dropped closes its connection.)"""
    params, headers = ({"access_token": token}, {}) if in_query else ({}, bearer_header(token))
    response = streams.enter_context(httpx.stream("GET", f"{url}/v1/events", params=params, headers=headers,
                                                  timeout=TIMEOUT))
    if response.status_code == 200:
        response.events = parse_events(response.iter_lines())
        assert next(response.events).event == "snapshot"
    else:
        response.read()
    return response


def assert_refused(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 503, response.status_code
    assert int(response.headers["retry-after"]) > 0
    assert setting + " " in response.json()["message"], response.json()


def test_a_token_past_its_bound_and_a_stream_past_the_total_get_503_until_one_closes(shared_url):
    with ExitStack() as streams:
        first = ExitStack()
        assert open_stream(first, shared_url, "token-a").status_code == 200
        assert open_stream(streams, shared_url, "token-a", in_query=True).status_code == 200  # the same token
        assert_refused(open_stream(streams, shared_url, "token-a"), "SALAD_MAX_EVENT_STREAMS_PER_TOKEN")

        assert open_stream(streams, shared_url, "token-b").status_code == 200
        assert_refused(open_stream(streams, shared_url, "token-c"), "SALAD_MAX_EVENT_STREAMS")  # the 4th
        assert_refused(open_stream(streams, shared_url, "token-b"), "SALAD_MAX_EVENT_STREAMS")

        first.close()  # its client leaves: the server ends the stream and gives its place back
        opened = wait_until(
            lambda: (r := open_stream(streams, shared_url, "token-c")).status_code == 200 and r,
            timeout=10, interval=0.2, message="a place freed by the closed stream")
        assert opened.headers["content-type"].startswith("text/event-stream")
        assert_refused(open_stream(streams, shared_url, "token-d"), "SALAD_MAX_EVENT_STREAMS")

        watching = snapshots(shared_url, "token-d")  # `salad watch` says why, and waits as it is told
        assert next(watching) == ("Shared answered 503: 3 event streams are open on this Shared, the most "
                                  "SALAD_MAX_EVENT_STREAMS allows; retry later; reconnecting in 5 s")
        watching.close()
