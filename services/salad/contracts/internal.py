"""Shared and Master calling each other: Master takes orders from Shared (intake), confirms them, and reports
their changes of state."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from salad.contracts import StrictModel
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


class OrderReports(StrictModel):
    reports: list[OrderReport] = Field(min_length=1, max_length=100)
