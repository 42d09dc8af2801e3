"""A worker whose answers from Master get lost on the way (a network blip, a proxy) loses no task an attempt:
it sends the request again under the same request id, and Master answers with the tasks it leased."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg

from tests.helpers import order, prepared_tasks, wait_final

LEASE_SECONDS = 30
DROPS = 3
FRUITS = ["apple", "banana", "kiwi", "mango", "pear", "plum"]


class LossyProxy(ThreadingHTTPServer):
    """Forwards every request to Master and its answer back, except every other exchange answer that leases
    tasks, up to `drops` of them: it closes the connection instead, as a network losing the answer after
    Master committed it. Alternate ones, so that both a long-poll and an exchange with results lose one."""

    daemon_threads = True

    def __init__(self, master_url: str, drops: int) -> None:
        super().__init__(("127.0.0.1", 0), Forward)
        self.master_url, self.drops = master_url, drops
        self.leasing = 0  # exchange answers that leased tasks
        self.dropped: list[dict] = []  # the requests whose answer was dropped
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # a worker hanging up on a long-poll: nothing to say

    def drop(self, path: str, body: bytes, answer: httpx.Response) -> bool:
        if path != "/v1/tasks/exchange" or answer.status_code != 200 or not answer.json()["tasks"]:
            return False
        with self.lock:
            self.leasing += 1
            if self.leasing % 2 == 0 or len(self.dropped) >= self.drops:
                return False
            self.dropped.append(json.loads(body))
            return True


class Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the worker's connections to Master are
    server: LossyProxy

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {name: self.headers[name] for name in ("Authorization", "Content-Type") if name in self.headers}
        answer = httpx.request(self.command, self.server.master_url + self.path, content=body, headers=headers,
                               timeout=60)
        if self.server.drop(self.path, body, answer):
            self.close_connection = True  # hang up without a word: the worker sees the connection close
            return
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_DELETE = forward

    def log_message(self, *_args) -> None:
        pass


def test_answers_lost_after_master_leased_tasks_cost_no_attempt_and_no_lease_wait(make_stack, postgres_url):
    stack = make_stack(postgres_url, workers=0, slots=2, time_scale=0.05,
                       env={"SALAD_LEASE_SECONDS": str(LEASE_SECONDS), "SALAD_INTAKE_INTERVAL": "0.1",
                            "SALAD_OUTBOX_INTERVAL": "0.1"})
    proxy = LossyProxy(stack.master_url, DROPS)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        # long-polls of a second: the proxy does not pass on a worker hanging up, so Master stops only after
        # the long-poll in flight ends
        stack.add_worker(SALAD_MASTER_URL=proxy.url, SALAD_CLAIM_WAIT="1")
        started = time.monotonic()
        placed = order(stack, FRUITS)
        final = wait_final(stack, placed["id"], timeout=2 * LEASE_SECONDS)
        took = time.monotonic() - started
    finally:
        proxy.shutdown()
        proxy.server_close()

    assert final["status"] == "completed"
    assert len(proxy.dropped) == DROPS
    assert any(request["results"] for request in proxy.dropped), "an exchange with results lost its answer too"
    assert took < LEASE_SECONDS, f"{took:.1f} s: a task waited out its lease"
    with psycopg.connect(stack.database_url) as conn:
        attempts = conn.execute("SELECT attempts FROM tasks ORDER BY id").fetchall()
        failures = conn.execute("SELECT task_id, error FROM task_failures").fetchall()
    assert attempts == [(1,)] * len(FRUITS), "no task lost an attempt"
    assert failures == [], "no lease expired"
    assert set(prepared_tasks(stack).values()) == {1}, "each fruit prepared once"
