"""Shared's public API (/v1/orders, /v1/dashboard, /v1/events): orders, their fruits, the dashboard."""

from datetime import datetime
from typing import Annotated

import unicodedata

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from salad.contracts import StrictModel
from salad.core.settings import shared_settings

# A letter or digit (any script) first, then letters with their combining marks, digits, underscore, space,
# dot, apostrophe, hyphen: no name made only of combining marks or zero-width characters.
MIN_PRIORITY, MAX_PRIORITY = -100, 100
FRUIT_PATTERN = r"^[\p{L}\p{N}][\p{L}\p{M}\p{N}_ .'-]*$"


def composed(name: str) -> str:
    """One spelling per name: "é" typed as e + combining accent is stored as the single character."""
    return unicodedata.normalize("NFC", name)


FruitName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=FRUIT_PATTERN),
                      AfterValidator(composed)]


class OrderCreate(StrictModel):
    fruits: list[FruitName] = Field(min_length=1, description="One task is made per fruit.")
    priority: int = Field(0, ge=MIN_PRIORITY, le=MAX_PRIORITY, strict=True,
                          description="Higher is served first; equal ones in order.")

    @field_validator("fruits")
    @classmethod
    def within_limits(cls, fruits: list[str]) -> list[str]:
        """Limits are settings (SALAD_MAX_FRUITS, SALAD_MAX_FRUIT_LENGTH), so they are checked here."""
        settings = shared_settings()
        if len(fruits) > settings.max_fruits:
            raise PydanticCustomError("too_many_fruits", "at most {max} fruits per order, got {got}",
                                      {"max": settings.max_fruits, "got": len(fruits)})
        for position, fruit in enumerate(fruits):
            if len(fruit) > settings.max_fruit_length:
                raise PydanticCustomError("fruit_too_long", "a fruit's name has at most {max} characters",
                                          {"max": settings.max_fruit_length, "position": position})
        return fruits


class FruitCounts(BaseModel):
    queued: int = Field(0, ge=0)
    running: int = Field(0, ge=0)
    done: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)


class FruitState(BaseModel):
    position: int
    fruit: str
    status: str
    worker: str | None = None
    attempts: int = 0
    silent_for: int | None = Field(None, description="Running, and its worker has not renewed the lease for "
                                                     "this many seconds (more than half the lease): it may be "
                                                     "gone; Master retries the fruit when the lease ends.")


class OrderPublic(BaseModel):
    id: int
    status: str
    fruits: list[str]
    priority: int
    counts: FruitCounts
    created_at: datetime
    accepted_at: datetime | None = None
    completed_at: datetime | None = None
    preparation_time: float | None = Field(None, description="Seconds from the order to its last fruit done.")
    failure_reason: str | None = None
    tasks: list[FruitState] | None = Field(None, description="Each fruit's state (single-order reads only).")
    tasks_unavailable: bool = Field(False, description="Master could not be reached: `tasks` is missing and "
                                                       "`counts` are as of Master's last report.")


class Attempt(BaseModel):
    """A failed attempt of a fruit: who tried, when it failed, and why."""

    attempt: int
    worker: str | None
    error: str
    failed_at: datetime


class FruitStory(BaseModel):
    """One fruit of a salad from queue to plate: its times, who prepared it, every failed attempt."""

    task_id: int
    position: int
    fruit: str
    state: str = Field(description="queued, running, done or failed.")
    worker: str | None = Field(None, description="Who prepares it, prepared it, or failed it last.")
    attempts: int
    max_attempts: int
    queued_at: datetime | None = Field(None, description="When it last entered the queue.")
    started_at: datetime | None = Field(None, description="When its last attempt started.")
    finished_at: datetime | None = None
    error: str | None = Field(None, description="Why its last attempt failed, if it did.")
    failures: list[Attempt]


class OrderStory(BaseModel):
    order: OrderPublic
    fruits: list[FruitStory] = Field(description="By position; empty before a Master split the order, or "
                                                 "after its tasks were pruned.")
    fruits_unavailable: bool = Field(False, description="Master could not be reached: `fruits` is empty.")


class Limits(BaseModel):
    """What an order may hold (SALAD_MAX_FRUITS, SALAD_MAX_FRUIT_LENGTH): the page checks before sending."""

    max_fruits: int
    max_fruit_length: int
    min_priority: int = MIN_PRIORITY
    max_priority: int = MAX_PRIORITY


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next: str | None = Field(None, description="URL of the next (older) page, if any.")


# --- Dashboard ---------------------------------------------------------------------------------
class FruitView(BaseModel):
    position: int
    fruit: str
    state: str = Field(description="queued, running, done or failed; unknown while Master is unreachable.")
    worker: str | None = Field(None, description="The worker preparing (or that prepared) this fruit.")
    silent_for: int | None = Field(None, description="Running, but its worker has not renewed the lease for "
                                                     "this many seconds.")


class OpenOrder(BaseModel):
    id: int
    status: str
    priority: int
    created_at: datetime
    counts: FruitCounts
    fruits: list[FruitView]


class WorkerView(BaseModel):
    name: str
    slots: int
    busy: int = Field(description="Fruits it is preparing now.")
    silent_for: int | None = Field(None, description="Not heard from for this many seconds, more than half "
                                                     "its time to live: it missed a check-in (unresponsive).")


class FinishedOrder(BaseModel):
    id: int
    status: str
    fruits: int
    completed_at: datetime | None
    preparation_time: float | None = Field(None, description="Seconds from the order to its last fruit done.")
    failure_reason: str | None = None


class Dashboard(BaseModel):
    open_orders: list[OpenOrder]
    open_total: int
    workers: list[WorkerView]
    master_unavailable: bool = Field(False, description="Master could not be reached: the fruits' states are "
                                                        "`unknown`, the counts as of its last report, and "
                                                        "no worker is listed.")
    completed: int = Field(description="Salads completed, all time.")
    failed: int
    recent: list[FinishedOrder]


# --- Charts ------------------------------------------------------------------------------------
class MinuteFigures(BaseModel):
    minute: datetime = Field(description="The minute's start.")
    completed: int
    failed: int
    p50: float | None = Field(None, description="Median completion time of the salads completed then (s).")
    p95: float | None = None


class LoadSample(BaseModel):
    at: datetime
    queued: int = Field(description="Fruits waiting for a worker.")
    busy: int = Field(description="Fruits leased to workers (prefetched ones included; a lost worker's until "
                                  "Master queues them again).")
    slots: int = Field(description="Slots of the live workers.")


class Charts(BaseModel):
    now: datetime = Field(description="Shared's clock: the charts end here.")
    window_minutes: int
    minutes: list[MinuteFigures] = Field(description="Minutes in which salads finished, oldest first.")
    load: list[LoadSample] = Field(description="Queue depth and busy slots, sampled by this Shared, oldest "
                                               "first; empty until it has sampled.")
