"""Tables. Shared owns `orders` and `order_totals`; Master owns `tasks`, `salads`, `outbox`, `task_failures`,
`workers` and `reaper_runs`.

Both services use one database and one migration history, but neither reads nor writes the other's tables:
they talk over REST, as in the seed (docs/architecture.md, "Service boundary").
"""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class OrderStatus(StrEnum):
    PENDING = "pending"  # accepted by Shared, not yet taken by a Master
    IN_PROGRESS = "in_progress"  # split into tasks by a Master
    COMPLETED = "completed"
    FAILED = "failed"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # leased to a worker until lease_expires_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Order(SQLModel, table=True):
    """A client's salad, as Shared stores it."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_status_id", "status", "id"),
        Index("ix_orders_completed_at", "completed_at",  # retention deletes the oldest finished first
              postgresql_where=text("completed_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    fruits: list[str] = Field(sa_column=Column(JSON, nullable=False))
    priority: int = 0
    status: str = Field(default=OrderStatus.PENDING, max_length=16)
    idempotency_key: str | None = Field(default=None, max_length=255, unique=True)
    request_hash: str | None = Field(default=None, max_length=64)  # refuses a reused key with other fruits
    created_at: datetime
    intake_lease_until: datetime | None = None  # a Master claimed it and must confirm before this
    accepted_at: datetime | None = None
    completed_at: datetime | None = None
    preparation_time: float | None = None  # seconds from created_at to the last fruit done
    failure_reason: str | None = None
    master_version: int = 0  # the last state report applied from Master (later ones win)
    # Fruits per state (queued, running, done, failed) as of Master's latest progress report, counted then:
    # what lists show without asking Master. None until Master reports.
    counts: dict[str, int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    counts_at: datetime | None = None


class OrderTotals(SQLModel, table=True):
    """Orders completed and failed, all time: one row (id 1), kept by a trigger on `orders` (migrations 0007
    and 0009), so the dashboard reads them without counting every finished order."""

    __tablename__ = "order_totals"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # always 1
    completed: int = Field(sa_column=Column(BigInteger, nullable=False))
    failed: int = Field(sa_column=Column(BigInteger, nullable=False))


class Task(SQLModel, table=True):
    """One fruit of one order, as Master dispatches it."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("order_id", "position", name="uq_tasks_order_position"),
        # The claim scans only queued rows, in hand-out order: priority, then first come first served,
        # then the rank planned within the order at its split (master/hand_out.py).
        Index(
            "ix_tasks_queued", text("priority DESC"), "order_id", "hand_out_rank", "id",
            postgresql_where=text("status = 'queued'"),
        ),
        Index(
            "ix_tasks_running_lease", "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int  # looked up by uq_tasks_order_position, which leads with it
    position: int
    fruit: str = Field(max_length=255)
    execution_time: int  # seconds, drawn as in the seed; workers scale it by SALAD_TIME_SCALE
    priority: int = 0
    hand_out_rank: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # 0 is handed out first
    status: str = Field(default=TaskStatus.QUEUED, max_length=16)
    attempts: int = 0
    max_attempts: int
    lease_id: str | None = Field(default=None, max_length=36)
    lease_expires_at: datetime | None = None
    worker: str | None = Field(default=None, max_length=255)
    created_at: datetime
    queued_at: datetime  # last time it entered the queue
    claimed_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None
    error: str | None = None


class Salad(SQLModel, table=True):
    """Master's record of an order it split: counts down to completion under a row lock."""

    __tablename__ = "salads"
    __table_args__ = (
        Index("ix_salads_finished_at", "finished_at",  # retention deletes the oldest finished first
              postgresql_where=text("finished_at IS NOT NULL")),
        Index("ix_salads_progress_due", "order_id",  # the relay finds the orders whose counts changed
              postgresql_where=text("progress_due")),
        Index("ix_salads_seed_request_key", "seed_request_key", unique=True,  # a retried GET /send_command
              postgresql_where=text("seed_request_key IS NOT NULL")),
    )

    order_id: int = Field(primary_key=True)
    total: int
    remaining: int
    status: str = Field(default=OrderStatus.IN_PROGRESS, max_length=16)
    ordered_at: datetime  # the order's creation at Shared: completion time counts from here
    finished_at: datetime | None = None
    preparation_time: float | None = None
    failure_reason: str | None = None
    version: int = 0  # counts state changes (completed, failed, resumed) reported to Shared
    seed_collected: bool = False  # handed out by the seed route GET /send_command
    seed_request_key: str | None = Field(default=None, max_length=255)  # the Idempotency-Key of that request
    # Its fruit counts changed since the relay last reported them to Shared (see Outbox).
    progress_due: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})


class Outbox(SQLModel, table=True):
    """A change of an order's state, to be reported to Shared until Shared acknowledges it.

    Reports carry the salad's version, so Shared applies them in order whatever order they arrive in. The
    fruit counts travel beside them without a row each: a salad whose counts changed is flagged
    (`progress_due`), and the relay sends the flagged orders' counts as they are when it sends, so only the
    latest reach Shared.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_undelivered", "next_attempt_at",
              postgresql_where=text("delivered_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(index=True)
    version: int
    status: str = Field(max_length=16)  # completed, failed, or in_progress again (resumed)
    finished_at: datetime | None = None
    preparation_time: float | None = None
    failure_reason: str | None = None
    attempts: int = 0
    next_attempt_at: datetime
    delivered_at: datetime | None = None


class TaskFailure(SQLModel, table=True):
    """One failed attempt of a task: kept so operators see who failed it and why."""

    __tablename__ = "task_failures"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(index=True)
    order_id: int = Field(index=True)
    attempt: int
    worker: str | None = Field(default=None, max_length=255)
    error: str
    failed_at: datetime


class RegisteredWorker(SQLModel, table=True):
    """A worker that checked in with Master recently (the registry; not the worker process itself)."""

    __tablename__ = "workers"

    name: str = Field(primary_key=True, max_length=255)
    slots: int
    prefetch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # fruits it holds ahead
    busy: int = 0
    started_at: datetime
    last_seen: datetime = Field(index=True)


class ReaperRun(SQLModel, table=True):
    """When a reaper last ran, on any Master replica, and the run before (one row, id 1, on the database's
    clock): after a long silence of every reaper, workers could not heartbeat either, so the next pass
    extends the running leases before it reaps (master/tasks.py, reaper_pass)."""

    __tablename__ = "reaper_runs"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_run: datetime
    previous_run: datetime | None = None
