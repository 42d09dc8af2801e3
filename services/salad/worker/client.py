"""The worker's side of Master's API, with retries where a brief Master outage must not lose work."""

import asyncio
import logging
import time

import httpx

from salad.master.schemas import LeasedTask

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
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(claim_wait + 10.0), headers=headers)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def claim(self, max_tasks: int) -> list[LeasedTask]:
        body = {"worker": self.worker, "max_tasks": max_tasks, "wait": self.claim_wait}
        response = await self.http.post("/v1/tasks/claim", json=body)
        response.raise_for_status()
        return [LeasedTask.model_validate(t) for t in response.json()["tasks"]]

    async def beat(self, slots: int, busy: int) -> None:
        response = await self.http.put(f"/v1/workers/{self.worker}", json={"slots": slots, "busy": busy})
        response.raise_for_status()

    async def leave(self) -> None:
        await self.http.delete(f"/v1/workers/{self.worker}")

    async def heartbeat(self, task: LeasedTask) -> None:
        await self._lease_call(task, "heartbeat", {"lease_id": task.lease_id}, retry=False)

    async def result(self, task: LeasedTask, outcome: str, text: str) -> None:
        """Report the outcome; `text` is the result of a success, the error otherwise."""
        body = {"lease_id": task.lease_id, "outcome": outcome,
                "result" if outcome == "succeeded" else "error": text}
        await self._lease_call(task, "result", body, retry=True)

    async def release(self, task: LeasedTask) -> None:
        await self._lease_call(task, "release", {"lease_id": task.lease_id}, retry=True)

    async def _lease_call(self, task: LeasedTask, action: str, body: dict, retry: bool) -> None:
        """POST to /v1/tasks/{id}/{action}; retries network errors and 5xx for up to retry_max_seconds."""
        deadline = time.monotonic() + self.retry_max_seconds
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                response = await self.http.post(f"/v1/tasks/{task.id}/{action}", json=body)
                if response.status_code == 409:
                    raise LeaseLost(task.id)
                if response.status_code not in RETRYABLE_STATUS:
                    response.raise_for_status()
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            if not retry or time.monotonic() + delay > deadline:
                raise RuntimeError(f"{action} of task {task.id} failed: {problem}")
            log.warning("%s of task %d failed (%s); retrying in %.1fs", action, task.id, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)
