"""Master's API for operators (and the CLI): workers seen, queue figures, tasks with their failures, requeues."""

from datetime import datetime

from pydantic import BaseModel, Field


class WorkerPublic(BaseModel):
    name: str
    slots: int
    prefetch: int
    busy: int
    started_at: datetime
    last_seen: datetime
    live: bool


class Stats(BaseModel):
    queued: int
    running: int
    live_workers: int
    oldest_queued_age_seconds: float
    slots: int = Field(description="The live workers' slots, in total.")


class FailedAttempt(BaseModel):
    attempt: int
    worker: str | None
    error: str
    failed_at: datetime


class TaskPublic(BaseModel):
    id: int
    order_id: int
    position: int
    fruit: str
    execution_time: int
    status: str
    attempts: int
    max_attempts: int
    worker: str | None
    error: str | None
    failures: list[FailedAttempt]
    queued_at: datetime | None = Field(None, description="When it last entered the queue.")
    claimed_at: datetime | None = Field(None, description="When its last attempt started (leased).")
    finished_at: datetime | None = None


class Requeued(BaseModel):
    requeued: int = Field(description="Tasks queued again (with the fruits their order's failure cancelled).")
