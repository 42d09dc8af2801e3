"""The worker's side of Master's API, with retries where a brief Master outage must not lose work."""

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx

from salad.core.auth import bearer_header
from salad.master.schemas import ExchangeResponse, LeasedTask, ResultAck

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
        self.http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(claim_wait + 10.0),
                                      headers=bearer_header(token))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def exchange(self, results: list["Finished"], max_tasks: int,
                       wait: float) -> tuple[list[ResultAck], list[LeasedTask]]:
        """Report finished tasks and lease up to `max_tasks` more in one request.

        Returns Master's acknowledgement of each result and the leased tasks. With results to deliver,
        network errors and 5xx are retried for up to retry_max_seconds; a bare claim is not retried.
        """
        body = {"worker": self.worker, "max_tasks": max_tasks, "wait": wait,
                "results": [finished.report() for finished in results]}
        response = await self._post("/v1/tasks/exchange", body, retry=bool(results), what="exchange")
        response.raise_for_status()
        # parsed and validated in one call to pydantic-core: json.loads and a model per task cost 3.5x as much
        answer = ExchangeResponse.model_validate_json(response.content)
        return answer.results, answer.tasks

    async def beat(self, slots: int, prefetch: int, busy: int) -> None:
        response = await self.http.put(f"/v1/workers/{self.worker}",
                                       json={"slots": slots, "prefetch": prefetch, "busy": busy})
        response.raise_for_status()

    async def leave(self) -> None:
        await self.http.delete(f"/v1/workers/{self.worker}")

    async def heartbeat(self, task: LeasedTask) -> None:
        await self._lease_call(task, "heartbeat", retry=False)

    async def release(self, task: LeasedTask) -> None:
        await self._lease_call(task, "release", retry=True)

    async def _lease_call(self, task: LeasedTask, action: str, retry: bool) -> None:
        response = await self._post(f"/v1/tasks/{task.id}/{action}", {"lease_id": task.lease_id}, retry,
                                    what=f"{action} of task {task.id}")
        if response.status_code == 409:
            raise LeaseLost(task.id)
        response.raise_for_status()

    async def _post(self, path: str, body: dict, retry: bool, what: str) -> httpx.Response:
        """POST `body`; with `retry`, network errors and 5xx are retried for up to retry_max_seconds."""
        deadline = time.monotonic() + self.retry_max_seconds
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                response = await self.http.post(path, json=body)
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                if not retry:
                    raise
                problem = repr(exc)
            if not retry or time.monotonic() + delay > deadline:
                raise RuntimeError(f"{what} failed: {problem}")
            log.warning("%s failed (%s); retrying in %.1fs", what, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)


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
