"""Settings of each service, read once from SALAD_* environment variables (see the README's table)."""

import socket
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from salad.core.db import sqlalchemy_url


class CommonSettings(BaseSettings):
    """What every service reads."""

    # errors name the setting, never echo its value: a database URL carries a password, tokens are secrets
    model_config = SettingsConfigDict(env_prefix="SALAD_", extra="ignore", hide_input_in_errors=True)

    log_level: str = "INFO"
    host: str = "0.0.0.0"


class DatabaseSettings(CommonSettings):
    database_url: str = Field("", validate_default=True)  # required: postgresql://user:password@host:5432/salad
    db_pool_size: int = Field(10, ge=1)  # connections per process
    retention_seconds: float | None = Field(None, gt=0)  # delete finished orders this long after; unset: keep
    prune_batch: int = Field(100, ge=1)  # finished orders whose rows one retention transaction deletes
    prune_interval: float = Field(10.0, gt=0)  # seconds between retention passes

    @field_validator("database_url")
    @classmethod
    def use_psycopg3(cls, url: str) -> str:
        if not url:
            raise ValueError("SALAD_DATABASE_URL is not set: give the PostgreSQL URL, "
                             "e.g. postgresql://user:password@host:5432/salad (`salad up` starts its own)")
        try:
            return sqlalchemy_url(url)
        except ValueError as exc:
            raise ValueError(f"SALAD_DATABASE_URL: {exc}") from None


class ApiSettings(DatabaseSettings):
    """What Shared and Master read: limits, and the bearer tokens of the callers they accept.

    With no token set, authentication is off (a warning is logged at start-up); `salad up` and the chart
    always set them.
    """

    max_body_bytes: int = Field(1_048_576, ge=1024)  # larger request bodies get 413
    # seconds an idle client connection is kept open: longer than a worker's heartbeat interval, so each beat
    # reuses its connection, and than the idle timeout of a load balancer in front (AWS ALB, nginx: 60 s)
    keep_alive_seconds: int = Field(75, ge=1)
    client_token: SecretStr | None = None  # clients of the public API (CLI, web page, seed client)
    master_token: SecretStr | None = None  # Master calling Shared's /internal API, Shared calling Master's reads
    seed_routes_open: bool = False  # the seed's routes without tokens, for the seed's own worker and client


class SharedSettings(ApiSettings):
    port: int = 8001
    master_url: str = "http://127.0.0.1:8000"  # Master's API: an order's fruits and the live workers
    max_fruits: int = Field(100, ge=1)  # fruits per order
    max_fruit_length: int = Field(64, ge=1)  # characters in a fruit's name
    intake_lease_seconds: float = Field(30.0, gt=0)  # Master must confirm a claimed order within this
    max_event_streams: int = Field(100, ge=1)  # open /v1/events streams per process; more get 503
    max_event_streams_per_token: int = Field(100, ge=1)  # of them, opened with one token (or one address)


class MasterSettings(ApiSettings):
    port: int = 8000
    worker_token: SecretStr | None = None  # workers calling the /v1/tasks and /v1/workers API
    task_timeout_seconds: float = Field(600.0, gt=0)  # a worker stops a fruit running longer than this
    shared_url: str = "http://127.0.0.1:8001"
    lease_seconds: float = Field(30.0, gt=0)  # a worker must heartbeat a task within this
    max_attempts: int = Field(3, ge=1)  # leases a task may lose before it fails
    worker_ttl_seconds: float = Field(15.0, gt=0)  # a worker unseen for this long is not live
    max_claim_wait: float = Field(30.0, ge=0)  # longest long-poll a worker may ask for
    max_tasks_per_claim: int = Field(100, ge=1)
    intake_interval: float = Field(0.5, gt=0)  # seconds between polls of Shared for new orders, and between
    # confirmations of the orders split meanwhile
    reaper_interval: float = Field(1.0, gt=0)  # seconds between scans for expired leases
    outbox_interval: float = Field(0.5, gt=0)  # seconds between relay passes; see OutboxRelay
    execution_time_min: int = Field(4, ge=0)  # seconds; each fruit's time is drawn in [min, max] as in the seed
    execution_time_max: int = Field(20, ge=0)
    random_seed: int | None = None  # set to make execution times reproducible

    @model_validator(mode="after")
    def reap_within_half_a_lease(self) -> "MasterSettings":
        """A reaper pass after a silence of half a lease extends the leases instead of reaping them (lease
        amnesty, master/tasks.py): a reaper slower than that would never reap."""
        if self.reaper_interval >= self.lease_seconds / 2:
            raise ValueError(f"SALAD_REAPER_INTERVAL ({self.reaper_interval:g} s) must be below half of "
                             f"SALAD_LEASE_SECONDS ({self.lease_seconds:g} s): lower it or raise the lease")
        return self


class WorkerSettings(CommonSettings):
    port: int = 9100  # /healthz, /readyz, /metrics
    master_url: str = "http://127.0.0.1:8000"
    worker_token: SecretStr | None = None  # sent to Master as a bearer token
    worker_name: str = Field(default_factory=socket.gethostname)  # the pod name on Kubernetes
    slots: int = Field(4, ge=1)  # tasks prepared at once
    prefetch: int = Field(0, ge=0)  # tasks leased ahead of the free slots, for short tasks
    time_scale: float = Field(1.0, ge=0)  # a fruit takes execution_time x time_scale seconds
    claim_wait: float = Field(10.0, ge=0)  # long-poll of one claim request
    grace_seconds: float = Field(30.0, ge=0)  # on SIGTERM, in-flight tasks may finish within this
    heartbeat_interval: float = Field(5.0, gt=0)  # keep below the Master's lease_seconds / 2
    retry_max_seconds: float = Field(60.0, gt=0)  # give up a request to Master after retrying this long


@lru_cache
def shared_settings() -> SharedSettings:
    return SharedSettings()


@lru_cache
def master_settings() -> MasterSettings:
    return MasterSettings()


@lru_cache
def worker_settings() -> WorkerSettings:
    return WorkerSettings()
