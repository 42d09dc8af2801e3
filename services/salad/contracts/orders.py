"""Shared's public API (/v1/orders, /v1/dashboard, /v1/events): orders, their fruits, the dashboard."""

from datetime import datetime
from typing import Annotated

import unicodedata

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

from salad.contracts import StrictModel
from salad.core.settings import shared_settings

# A letter or digit (any script) first, then letters with their combining marks, digits, underscore, space,
# dot, apostrophe, hyphen: no name made only of combining marks or zero-width characters.
FRUIT_PATTERN = r"^[\p{L}\p{N}][\p{L}\p{M}\p{N}_ .'-]*$"


def composed(name: str) -> str:
    """One spelling per name: "é" typed as e + combining accent is stored as the single character."""
    return unicodedata.normalize("NFC", name)


FruitName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=FRUIT_PATTERN),
                      AfterValidator(composed)]


class OrderCreate(StrictModel):
    fruits: list[FruitName] = Field(min_length=1, description="One task is made per fruit.")
    priority: int = Field(0, ge=-100, le=100, strict=True,
                          description="Higher is served first; equal ones in order.")

    @field_validator("fruits")
    @classmethod
    def within_limits(cls, fruits: list[str]) -> list[str]:
        """Limits are settings (SALAD_MAX_FRUITS, SALAD_MAX_FRUIT_LENGTH), so they are checked here."""
        settings = shared_settings()
        if len(fruits) > settings.max_fruits:
            raise ValueError(f"at most {settings.max_fruits} fruits per order, got {len(fruits)}")
        for fruit in fruits:
            if len(fruit) > settings.max_fruit_length:
                raise ValueError(f"a fruit's name has at most {settings.max_fruit_length} characters")
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


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next: str | None = Field(None, description="URL of the next (older) page, if any.")


# --- Dashboard ---------------------------------------------------------------------------------
class FruitView(BaseModel):
    position: int
    fruit: str
    state: str = Field(description="queued, running, done or failed; unknown while Master is unreachable.")
    worker: str | None = Field(None, description="The worker preparing (or that prepared) this fruit.")


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
