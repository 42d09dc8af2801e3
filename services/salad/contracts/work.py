"""Master's API for workers (/v1/tasks, /v1/workers): claims with long-poll, exchanges, leases, check-ins."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from salad.contracts import StrictModel
from salad.core.fields import DbId, Name, Text

WorkerName = Name


class Retryable(StrictModel):
    """A request that leases tasks, which a worker can send again when it got no answer, losing nothing."""

    request_id: UUID | None = Field(
        None, description="Names this request: the tasks it leases are leased under it (their lease_id), so a "
                          "retry can be answered with them.")
    retry: bool = Field(
        False, strict=True,
        description="This request was sent before under the same request_id without an answer: Master answers "
                    "with the tasks that attempt leased (while they run under its lease) and leases no other; "
                    "when there are none, it leases as usual.")


class ClaimRequest(Retryable):
    worker: WorkerName
    max_tasks: int = Field(1, ge=1, le=1000, strict=True,
                           description="Free slots: at most this many tasks are leased.")
    wait: float = Field(0, ge=0, le=3600, strict=True,
                        description="Seconds to hold the request open while no task is queued.")


class LeasedTask(BaseModel):
    id: int
    order_id: int
    fruit: str
    execution_time: int
    attempt: int
    lease_id: str
    lease_expires_at: datetime
    timeout_seconds: float = Field(description="Stop the task and report `timed_out` after this long.")


class ClaimResponse(BaseModel):
    tasks: list[LeasedTask]


class LeaseRef(StrictModel):
    lease_id: UUID


class TaskResult(LeaseRef):
    outcome: Literal["succeeded", "failed", "timed_out"] = "succeeded"
    result: Text | None = None
    error: Text | None = None


class Report(TaskResult):
    """A worker's result for one task, in a batch."""

    id: DbId


class ExchangeRequest(Retryable):
    worker: WorkerName
    results: list[Report] = Field(default_factory=list, max_length=1000,
                                  description="Results of tasks this worker finished.")
    max_tasks: int = Field(0, ge=0, le=1000, strict=True,
                           description="Free slots: at most this many tasks are leased.")
    wait: float = Field(0, ge=0, le=3600, strict=True,
                        description="Seconds to hold the request open while no task is queued "
                                                      "(after the results are recorded).")


class ResultAck(BaseModel):
    id: int
    status: str | None = Field(description="The task's status after the report; null when there is no such task.")
    lease_lost: bool = Field(False, description="The task is no longer leased under this lease_id: the result "
                                                "was not recorded.")


class ExchangeResponse(BaseModel):
    results: list[ResultAck] = Field(description="One per reported result, in the same order.")
    tasks: list[LeasedTask]


class LeaseState(BaseModel):
    id: int
    status: str
    lease_expires_at: datetime | None = None


class WorkerCheckIn(StrictModel):
    """A worker's check-in with Master's registry (PUT /v1/workers/{name}), every heartbeat interval."""

    slots: int = Field(ge=1, le=10_000, strict=True)
    busy: int = Field(0, ge=0, le=10_000, strict=True)
    prefetch: int = Field(0, ge=0, le=10_000, strict=True,
                          description="Tasks it leases ahead of its free slots: Master plans an order's hand-out "
                                      "for the live workers' slots and prefetch.")
