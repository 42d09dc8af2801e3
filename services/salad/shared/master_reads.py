"""Shared's reads from Master: what Shared shows of an order's fruits and of the live workers comes through
Master's API (GET /v1/progress), never from Master's tables. When Master cannot answer, the read gives None
and Shared answers with what it owns (docs/architecture.md, "Service boundary")."""

import logging
import time

import httpx
from pydantic import SecretStr, ValidationError

from salad.contracts.internal import Progress
from salad.core.auth import bearer_header

MASTER_READ_TIMEOUT = 2.0  # seconds an order or dashboard read waits for Master's part before going without
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

    def close(self) -> None:
        self.client.close()
