"""The worker's side of Master's API (on aiohttp: core/http.py), with retries where a brief Master outage
must not lose work."""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from uuid import uuid4

import aiohttp

from salad.contracts.work import ExchangeResponse, LeasedTask, ResultAck
from salad.core.auth import bearer_header
from salad.core.http import Answer, send, session

RETRY_FIRST_DELAY = 0.2  # seconds; doubles up to RETRY_MAX_DELAY
RETRY_MAX_DELAY = 5.0
RETRYABLE_STATUS = {502, 503, 504}

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Master answered 409: the task was requeued or handed to another worker."""


class MasterClient:
    def __init__(self, base_url: str, worker: str, claim_wait: float, retry_max_seconds: float,
                 token: str | None = None) -> None:
        self.worker = worker
        self.claim_wait = claim_wait
        self.retry_max_seconds = retry_max_seconds
        self.base_url = base_url.rstrip("/")
        self.http = session(claim_wait + 10.0, bearer_header(token))

    async def aclose(self) -> None:
        await self.http.close()

    async def exchange(self, results: list["Finished"], max_tasks: int,
                       wait: float) -> tuple[list[ResultAck], list[LeasedTask]]:
        """Report finished tasks and lease up to `max_tasks` more in one request.

        Returns Master's acknowledgement of each result and the leased tasks. Network errors and 502-504 are
        retried for up to retry_max_seconds under the same request id, marked as a retry: Master answers it
        with the tasks the first attempt leased, if its answer was lost, so none waits out its lease. A bare
        long-poll is retried too: one whose answer was lost would strand its tasks as well.
        """
        body = {"worker": self.worker, "request_id": str(uuid4()), "max_tasks": max_tasks, "wait": wait,
                "results": [finished.report() for finished in results]}
        answer = await self._post("/v1/tasks/exchange", body, retry=True, what="exchange",
                                  resent={**body, "retry": True})
        answer.raise_for_status("exchange")
        # parsed and validated in one call to pydantic-core: json.loads and a model per task cost 3.5x as much
        exchanged = ExchangeResponse.model_validate_json(answer.content)
        return exchanged.results, exchanged.tasks

    async def check_in(self, slots: int, prefetch: int, busy: int) -> None:
        """Tell Master's registry this worker is alive, with its capacity and load."""
        answer = await self._send("PUT", f"/v1/workers/{self.worker}",
                                  {"slots": slots, "prefetch": prefetch, "busy": busy})
        answer.raise_for_status("check-in")

    async def leave(self) -> None:
        await self._send("DELETE", f"/v1/workers/{self.worker}")

    async def heartbeat_lease(self, task: LeasedTask) -> None:
        """Extend the lease of a task this worker prepares; LeaseLost when Master gave it to another."""
        await self._lease_call(task, "heartbeat", retry=False)

    # The names runner.py still calls (being refactored elsewhere): drop them once it calls the ones above.
    beat = check_in
    heartbeat = heartbeat_lease

    async def release(self, task: LeasedTask) -> None:
        await self._lease_call(task, "release", retry=True)

    async def _lease_call(self, task: LeasedTask, action: str, retry: bool) -> None:
        what = f"{action} of task {task.id}"
        answer = await self._post(f"/v1/tasks/{task.id}/{action}", {"lease_id": task.lease_id}, retry, what)
        if answer.status == 409:
            raise LeaseLost(task.id)
        answer.raise_for_status(what)

    async def _send(self, method: str, path: str, body: dict | None = None) -> Answer:
        return await send(self.http, method, self.base_url + path, body)

    async def _post(self, path: str, body: dict, retry: bool, what: str, resent: dict | None = None) -> Answer:
        """POST `body`; with `retry`, network errors and 5xx are retried for up to retry_max_seconds, sending
        `resent` (if given) instead."""
        deadline = time.monotonic() + self.retry_max_seconds
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                answer = await self._send("POST", path, body)
                if answer.status not in RETRYABLE_STATUS:
                    return answer
                problem = f"HTTP {answer.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not retry:
                    raise
                problem = repr(exc)
            if not retry or time.monotonic() + delay > deadline:
                raise RuntimeError(f"{what} failed: {problem}")
            log.warning("%s failed (%s); retrying in %.1fs", what, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)
            body = resent or body


@dataclass(frozen=True)
class Finished:
    """A fruit this worker finished, waiting to be reported: `text` is the result of a success, else the error."""

    task: LeasedTask
    outcome: str
    text: str
    at: float = field(default_factory=time.monotonic)  # when it finished

    def report(self) -> dict:
        return {"id": self.task.id, "lease_id": self.task.lease_id, "outcome": self.outcome,
                "result" if self.outcome == "succeeded" else "error": self.text}
