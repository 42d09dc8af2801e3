"""What the web page and `salad watch` show: open orders fruit by fruit, live workers, recent salads.

Read in one transaction from the database (Shared reads Master's `tasks` and `workers`, never writes them),
so every Shared replica serves the same snapshot. A few small indexed queries.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from salad.contracts.orders import Dashboard, FinishedOrder, FruitView, OpenOrder, WorkerView
from salad.core.db import snapshot, utcnow
from salad.core.models import Order, OrderStatus, RegisteredWorker, Task, TaskStatus
from salad.shared.orders import COUNT_OF_TASK_STATUS, count_states
from salad.shared.sql import SQL

OPEN_LIMIT = 50  # open orders shown, oldest first; `open_total` counts them all
RECENT_LIMIT = 10  # finished orders shown, most recently finished first
RECENT_SCAN = 50  # newest finished orders by id among which the most recently finished are picked
LIVE_WORKER_SECONDS = 15.0  # a worker unseen for this long is not shown (Master's default worker TTL)


@dataclass(frozen=True)
class Snapshot:
    """A dashboard as sent: its JSON and a digest of it (the SSE event id, equal on every replica)."""

    json: str
    id: str

    @classmethod
    def of(cls, dashboard: Dashboard) -> "Snapshot":
        text = dashboard.model_dump_json()
        return cls(text, hashlib.sha256(text.encode()).hexdigest()[:16])


def fruit_views(order: Order, tasks: list[Task]) -> list[FruitView]:
    if not tasks:  # not split by a Master yet: every fruit waits
        return [FruitView(position=i, fruit=f, state="queued") for i, f in enumerate(order.fruits)]
    return [FruitView(position=t.position, fruit=t.fruit, state=COUNT_OF_TASK_STATUS[t.status],
                      worker=t.worker) for t in tasks]


def open_orders(session) -> tuple[list[OpenOrder], int]:
    orders = session.execute(SQL.open_orders, dict(limit=OPEN_LIMIT)).all()
    total = session.execute(SQL.open_orders_count).scalar_one()
    tasks: dict[int, list[Task]] = defaultdict(list)
    if orders:
        query = select(Task).where(Task.order_id.in_([o.id for o in orders]))
        for task in session.scalars(query.order_by(Task.order_id, Task.position)):
            tasks[task.order_id].append(task)
    views = []
    for order in orders:
        fruits = fruit_views(order, tasks[order.id])
        views.append(OpenOrder(id=order.id, status=order.status, priority=order.priority,
                               created_at=order.created_at, counts=count_states(f.state for f in fruits),
                               fruits=fruits))
    return views, total


def live_workers(session) -> list[WorkerView]:
    since = utcnow() - timedelta(seconds=LIVE_WORKER_SECONDS)
    busy = dict(session.execute(
        select(Task.worker, func.count()).where(Task.status == TaskStatus.RUNNING).group_by(Task.worker)
    ).all())
    rows = session.scalars(select(RegisteredWorker).where(RegisteredWorker.last_seen >= since)
                           .order_by(RegisteredWorker.name))
    return [WorkerView(name=w.name, slots=w.slots, busy=busy.get(w.name, 0)) for w in rows]


def recent_orders(session) -> list[FinishedOrder]:
    """The most recently finished among the newest finished ones (an index scan, not a sort of them all)."""
    rows = session.execute(SQL.newest_finished, dict(limit=RECENT_SCAN)).all()
    rows.sort(key=lambda o: (o.completed_at is not None, o.completed_at or o.created_at, o.id), reverse=True)
    return [FinishedOrder(id=o.id, status=o.status, fruits=len(o.fruits), completed_at=o.completed_at,
                          preparation_time=o.preparation_time, failure_reason=o.failure_reason)
            for o in rows[:RECENT_LIMIT]]


def read_dashboard(engine: Engine) -> Dashboard:
    with snapshot(engine) as session:
        orders, total = open_orders(session)
        finished = dict(session.execute(SQL.finished_counts).all())
        return Dashboard(open_orders=orders, open_total=total, workers=live_workers(session),
                         completed=finished.get(OrderStatus.COMPLETED.value, 0),
                         failed=finished.get(OrderStatus.FAILED.value, 0),
                         recent=recent_orders(session))
