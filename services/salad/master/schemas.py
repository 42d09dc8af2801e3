"""Request and response bodies of Master's worker API."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

WorkerName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimRequest(StrictModel):
    worker: WorkerName
    max_tasks: int = Field(1, ge=1, description="Free slots: at most this many tasks are leased.")
    wait: float = Field(0, ge=0, description="Seconds to hold the request open while no task is queued.")


class LeasedTask(BaseModel):
    id: int
    order_id: int
    fruit: str
    execution_time: int
    attempt: int
    lease_id: str
    lease_expires_at: datetime


class ClaimResponse(BaseModel):
    tasks: list[LeasedTask]


class LeaseRef(StrictModel):
    lease_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]


class TaskResult(LeaseRef):
    outcome: Literal["succeeded", "failed"] = "succeeded"
    result: str | None = Field(None, max_length=10_000)
    error: str | None = Field(None, max_length=10_000)


class LeaseState(BaseModel):
    id: int
    status: str
    lease_expires_at: datetime | None = None


class WorkerBeat(StrictModel):
    slots: int = Field(ge=1)
    busy: int = Field(0, ge=0)


class WorkerPublic(BaseModel):
    name: str
    slots: int
    busy: int
    started_at: datetime
    last_seen: datetime
    live: bool


class Stats(BaseModel):
    queued: int
    running: int
    live_workers: int
    oldest_queued_age_seconds: float


# --- Seed contract -----------------------------------------------------------------------------
class SeedWorker(BaseModel):
    nom_worker: WorkerName


class SeedTask(BaseModel):
    id: int
    fruit: str
    execution_time: int
    nom_worker: WorkerName


class SeedResult(BaseModel):
    task: SeedTask
    result: str | None = None
