"""Shared and Master calling each other: Master takes orders from Shared (intake), confirms them, and reports
their changes of state and fruit counts; Shared reads from Master what it shows of tasks and workers."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from salad.contracts import StrictModel
from salad.contracts.orders import FruitCounts, FruitState, WorkerView
from salad.core.fields import DbId, Moment, Text


# --- Shared's internal API (/internal/v1), called by Master -----------------------------------------
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


class OrderProgress(StrictModel):
    """An order's fruits per state at Master, as counted at `counted_at`: Shared keeps the latest counted."""

    order_id: DbId
    counts: FruitCounts
    counted_at: Moment


class OrderReports(StrictModel):
    reports: list[OrderReport] = Field(default_factory=list, max_length=100)
    progress: list[OrderProgress] = Field(default_factory=list, max_length=100,
                                          description="Fruit counts of orders whose counts changed.")

    @model_validator(mode="after")
    def not_empty(self) -> "OrderReports":
        if not self.reports and not self.progress:
            raise ValueError("reports and progress are both empty")
        return self


# --- Master's reads for Shared (GET /v1/progress), called by Shared ---------------------------------
class OrderFruits(BaseModel):
    order_id: int
    fruits: list[FruitState] = Field(description="Each fruit of the order, by position; none before Master "
                                                 "split the order, or after its tasks were pruned.")


class Progress(BaseModel):
    """What Master is doing for some orders, read in one snapshot: their fruits, and the live workers."""

    orders: list[OrderFruits]
    workers: list[WorkerView] | None = Field(None, description="The live workers (when asked for).")
