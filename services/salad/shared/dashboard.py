"""What the web page and `salad watch` show: open orders fruit by fruit, live workers, recent salads.

The orders come from Shared's table, read in one snapshot; their fruits and the live workers from Master's
API, in one call for the whole dashboard (GET /v1/progress, one snapshot at Master), so every Shared replica
serves the same dashboard. When Master cannot answer, the dashboard says so and shows what Shared owns: the
orders, their counts as of Master's last reports, fruits whose state is unknown.
"""

import hashlib
from dataclasses import dataclass

from sqlalchemy.engine import Engine, Row

from salad.contracts.orders import Dashboard, FinishedOrder, FruitState, FruitView, OpenOrder
from salad.core.db import snapshot
from salad.core.models import OrderStatus
from salad.shared.master_reads import MasterReads
from salad.shared.orders import COUNT_OF_TASK_STATUS, count_states, reported_counts
from salad.shared.sql import SQL

OPEN_LIMIT = 50  # open orders shown, oldest first; `open_total` counts them all
RECENT_LIMIT = 10  # finished orders shown, most recently finished first
RECENT_SCAN = 50  # newest finished orders by id among which the most recently finished are picked
UNKNOWN = "unknown"  # a fruit's state while Master cannot be asked


@dataclass(frozen=True)
class Snapshot:
    """A dashboard as sent: its JSON and a digest of it (the SSE event id, equal on every replica)."""

    json: str
    id: str

    @classmethod
    def of(cls, dashboard: Dashboard) -> "Snapshot":
        text = dashboard.model_dump_json()
        return cls(text, hashlib.sha256(text.encode()).hexdigest()[:16])


def open_order(order: Row, fruits: list[FruitState] | None) -> OpenOrder:
    """An open order fruit by fruit: as Master has them (`fruits`), every fruit waiting while no Master took
    the order, each one's state unknown when Master could not be asked (None)."""
    if fruits:
        views = [FruitView(position=f.position, fruit=f.fruit, state=COUNT_OF_TASK_STATUS[f.status],
                           worker=f.worker, silent_for=f.silent_for) for f in fruits]
        counts = count_states(view.state for view in views)
    else:
        unknown = fruits is None and order.status != OrderStatus.PENDING
        views = [FruitView(position=i, fruit=name, state=UNKNOWN if unknown else "queued")
                 for i, name in enumerate(order.fruits)]
        counts = reported_counts(order)
    return OpenOrder(id=order.id, status=order.status, priority=order.priority, created_at=order.created_at,
                     counts=counts, fruits=views)


def recent_orders(rows: list[Row]) -> list[FinishedOrder]:
    """The most recently finished among the newest finished ones (an index scan, not a sort of them all)."""
    rows = sorted(rows, key=lambda o: (o.completed_at is not None, o.completed_at or o.created_at, o.id),
                  reverse=True)
    return [FinishedOrder(id=o.id, status=o.status, fruits=len(o.fruits), completed_at=o.completed_at,
                          preparation_time=o.preparation_time, failure_reason=o.failure_reason)
            for o in rows[:RECENT_LIMIT]]


def read_dashboard(engine: Engine, master: MasterReads | None) -> Dashboard:
    with snapshot(engine) as session:
        orders = session.execute(SQL.open_orders, dict(limit=OPEN_LIMIT)).all()
        total = session.execute(SQL.open_orders_count).scalar_one()
        totals = session.execute(SQL.order_totals).one()
        newest = session.execute(SQL.newest_finished, dict(limit=RECENT_SCAN)).all()
    found = master.progress([o.id for o in orders], workers=True) if master is not None else None
    fruits = {} if found is None else {o.order_id: o.fruits for o in found.orders}
    return Dashboard(
        open_orders=[open_order(o, None if found is None else fruits.get(o.id, [])) for o in orders],
        open_total=total, workers=[] if found is None else found.workers or [],
        master_unavailable=found is None,
        completed=totals.completed, failed=totals.failed,
        recent=recent_orders(newest),
    )
