"""Request and response bodies of Shared's API."""

from datetime import datetime
from typing import Annotated, Literal

import unicodedata

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from salad.core.fields import DbId, Moment, Text
from salad.core.settings import shared_settings

# A letter or digit (any script) first, then letters with their combining marks, digits, underscore, space,
# dot, apostrophe, hyphen: no name made only of combining marks or zero-width characters.
FRUIT_PATTERN = r"^[\p{L}\p{N}][\p{L}\p{M}\p{N}_ .'-]*$"


def composed(name: str) -> str:
    """One spelling per name: "é" typed as e + combining accent is stored as the single character."""
    return unicodedata.normalize("NFC", name)


FruitName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=FRUIT_PATTERN),
                      AfterValidator(composed)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0


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


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next: str | None = Field(None, description="URL of the next (older) page, if any.")


# --- Master-facing -----------------------------------------------------------------------------
class IntakeClaim(StrictModel):
    limit: int = Field(10, ge=1, le=100, strict=True)


class IntakeOrder(BaseModel):
    id: int
    fruits: list[str]
    priority: int
    created_at: datetime


class IntakeBatch(BaseModel):
    orders: list[IntakeOrder]


class OrderState(BaseModel):
    """An order's status after Master's call: the internal endpoints answer no more than that."""

    id: int
    status: str


class OrderIds(StrictModel):
    ids: list[DbId] = Field(min_length=1, max_length=100)


class OrderReport(StrictModel):
    """A change of an order's state at Master. Reports apply in version order; a repeated one is a no-op."""

    order_id: DbId
    version: int = Field(ge=1, le=2**31 - 1, strict=True)
    status: Literal["completed", "failed", "in_progress"]
    finished_at: Moment | None = None
    preparation_time: float | None = Field(None, ge=0, le=1e9, strict=True)
    failure_reason: Text | None = None


class OrderReports(StrictModel):
    reports: list[OrderReport] = Field(min_length=1, max_length=100)


# --- Seed contract -----------------------------------------------------------------------------
class SeedFruit(BaseModel):
    fruit: FruitName


class SeedMessage(BaseModel):
    message: str
