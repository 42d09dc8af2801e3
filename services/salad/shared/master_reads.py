"""Shared's reads from Master: what Shared shows of an order's fruits and of the live workers comes through
Master's API (GET /v1/progress, GET /v1/tasks), never from Master's tables; a requeue goes the same way.
When Master cannot answer, the read gives None and Shared answers with what it owns (docs/architecture.md,
"Service boundary")."""

import logging
import time

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from salad.contracts.internal import Progress
from salad.contracts.operators import Stats, TaskPublic
from salad.core.auth import bearer_header

MASTER_READ_TIMEOUT = 2.0  # seconds an order or dashboard read waits for Master's part before going without
MAX_TASKS_READ = 1000  # Master's most per GET /v1/tasks: an order's fruits, SALAD_MAX_FRUITS (100) by default
TASKS = TypeAdapter(list[TaskPublic])
WARN_EVERY = 30.0  # seconds between warnings while Master stays unreachable

log = logging.getLogger(__name__)


class MasterReads:
    """A keep-alive client of Master's read API, presenting the master token (thread-safe: routes run in
    the thread pool)."""

    def __init__(self, master_url: str, token: SecretStr | str | None,
                 timeout_seconds: float = MASTER_READ_TIMEOUT) -> None:
        self.client = httpx.Client(base_url=master_url.rstrip("/"), timeout=timeout_seconds,
                                   headers=bearer_header(token))
        self.warned_at = 0.0

    def progress(self, order_ids: list[int], workers: bool = False) -> Progress | None:
        """The fruits of `order_ids` and, `workers`, the live workers, in one snapshot at Master; None when
        Master is unreachable or failed."""
        if not order_ids and not workers:
            return Progress(orders=[])
        params = [("order_id", order_id) for order_id in order_ids] + [("workers", "true")] * workers
        try:
            response = self.client.get("/v1/progress", params=params)
            response.raise_for_status()
            return Progress.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as exc:
            if time.monotonic() - self.warned_at >= WARN_EVERY:
                self.warned_at = time.monotonic()
                log.warning("Master's progress could not be read (shown as unavailable): %s", exc)
            return None

    def stats(self) -> Stats | None:
        """Master's queue figures (queued, running, live workers); None when Master cannot answer."""
        try:
            response = self.client.get("/v1/stats")
            response.raise_for_status()
            return Stats.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            return None  # the charts go without this sample; the dashboard's read says Master is away

    def tasks(self, order_id: int) -> list[TaskPublic] | None:
        """Every fruit of the order as a task, with its times and every failed attempt (a salad's story);
        None when Master is unreachable or failed."""
        try:
            response = self.client.get("/v1/tasks", params={"order_id": order_id, "limit": MAX_TASKS_READ})
            response.raise_for_status()
            return TASKS.validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as exc:
            log.warning("Master's tasks of order %d could not be read: %s", order_id, exc)
            return None

    def requeue(self, order_id: int) -> httpx.Response | None:
        """Ask Master to queue the order's failed fruits again; its answer as it is (200, 404, 409), or None
        when Master cannot be reached."""
        try:
            return self.client.post(f"/v1/orders/{order_id}/requeue")
        except httpx.HTTPError as exc:
            log.warning("order %d could not be requeued at Master: %s", order_id, exc)
            return None

    def close(self) -> None:
        self.client.close()
