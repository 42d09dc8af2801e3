"""The wire contracts: every request and response body that crosses a service boundary, in one package that
Shared, Master, the worker and the CLI all import (and none of them imports another's package).

- `work`: Master's API for workers (claim, exchange, lease heartbeats, results, check-in).
- `orders`: Shared's public API for clients (orders, their fruits, the dashboard).
- `internal`: Shared and Master calling each other (intake, reports, and Master's reads for Shared).
- `operators`: Master's API for operators (workers, queue stats, tasks, requeue).
- `seed`: the seed document's routes on Shared and Master.
"""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A request body: an unknown field is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid")
