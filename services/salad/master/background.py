"""Master's background loops: intake of new orders, reaping of expired leases, the reports to Shared.

Every replica runs all three; the database (SKIP LOCKED, leases, unique keys) keeps them from doing any
piece of work twice.
"""

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from itertools import islice

import aiohttp
import httpx
from anyio import to_thread
from sqlalchemy.engine import Engine

from salad.contracts.internal import IntakeBatch, IntakeOrder, OrderProgress, OrderReport
from salad.contracts.orders import FruitCounts
from salad.contracts.work import LeasedTask
from salad.core.db import autocommit, utcnow
from salad.core.http import send
from salad.core.loops import MAX_BACKOFF
from salad.core.settings import MasterSettings
from salad.master import hand_out, registry, tasks
from salad.master.sql import SQL
from salad.master.wakeup import QueueSignal, Waiting

OUTBOX_BATCH = 20
PROGRESS_BATCH = 100  # orders whose changed counts one report call carries (Shared's limit)
INTAKE_BATCH = 20
ACCEPT_BATCH = 100  # order ids per confirmation (Shared's limit)
REPORT_LINGER = 0.02  # seconds a woken relay pass waits, so that the completions of that while share one call
SENDING_SECONDS = 15.0  # a report taken to send, or handed to a relay, is due again after this (its relay may
# have stopped)
ACKS_HELD_MAX = 5.0  # reads of the outbox this far apart at most leave what Shared acknowledged to the next
CAPACITIES_MAX_AGE = 1.0  # seconds a read of the live workers serves hand-out plans: Intake.live_workers


log = logging.getLogger(__name__)


class Intake:
    """Takes pending orders from Shared over REST, splits each into one task per fruit, then confirms them."""

    def __init__(self, engine: Engine, http: aiohttp.ClientSession, settings: MasterSettings,
                 signal: QueueSignal) -> None:
        self.engine, self.http, self.settings, self.signal = engine, http, settings, signal
        self.shared_url = settings.shared_url.rstrip("/")
        self.rng = random.Random(settings.random_seed)
        self.unconfirmed: dict[int, None] = {}  # orders split, not yet confirmed to Shared (an ordered set)
        self.capacities: tuple[float, list[hand_out.Capacity]] = (-CAPACITIES_MAX_AGE, [])  # (at, workers)

    def execution_times(self, n: int) -> list[int]:
        """As in the seed: each fruit takes a random whole number of seconds in [min, max]."""
        low, high = self.settings.execution_time_min, max(self.settings.execution_time_min,
                                                          self.settings.execution_time_max)
        return [self.rng.randint(low, high) for _ in range(n)]

    async def step(self) -> bool:
        answer = await send(self.http, "POST", f"{self.shared_url}/internal/v1/intake/claim",
                            {"limit": INTAKE_BATCH})
        answer.raise_for_status("intake")
        orders = IntakeBatch.model_validate_json(answer.content).orders
        if not orders:
            return False
        fruits = sum(len(o.fruits) for o in orders)
        takers = self.signal.take(fruits)  # as many waiting claims as these fruits fill; the others wait on
        handed = [[] for _ in takers]
        try:
            handed = await to_thread.run_sync(self.split, orders, [waiting for _, waiting in takers])
        finally:  # split or not, every claim taken is answered (with no task, it claims again)
            unwanted = []  # leased to a claim that stopped waiting meanwhile (its worker left)
            for (future, _), leased in zip(takers, handed, strict=True):
                if not self.signal.hand(future, leased):
                    unwanted += leased
            if sum(map(len, handed)) < fruits:  # some are queued (or the split failed): wake claims for them
                self.signal.fire()
        if unwanted:
            await to_thread.run_sync(tasks.release_all, self.engine, unwanted)
        self.unconfirmed.update(dict.fromkeys(o.id for o in orders))  # one handed out again is listed once
        return len(orders) == INTAKE_BATCH

    def live_workers(self) -> list[hand_out.Capacity]:
        """The live workers' capacities, read at most every CAPACITIES_MAX_AGE: with a thousand workers a
        read costs Master milliseconds, and the plan needs only their rough shape."""
        read_at, workers = self.capacities
        if time.monotonic() - read_at > CAPACITIES_MAX_AGE:
            workers = registry.capacities(self.engine, self.settings.worker_ttl_seconds)
            self.capacities = (time.monotonic(), workers)
        return workers

    def split(self, orders: list[IntakeOrder], takers: list[Waiting]) -> list[list[LeasedTask]]:
        """Draw each fruit's time, plan the hand-out for the live workers, and store the tasks, the first
        leased to the claims waiting here (`takers`). Returns the tasks leased to each. The live workers are
        read only for an order worth planning (one fruit, or all of one time, go longest first alike)."""
        batch = []
        for o in orders:
            times = self.execution_times(len(o.fruits))
            workers = self.live_workers() if hand_out.worth_planning(times) else []
            batch.append(tasks.NewOrder(o.id, o.fruits, times, o.priority, o.created_at,
                                        hand_out_ranks=hand_out.plan(times, workers)))
        settings = self.settings
        return tasks.split_orders(self.engine, batch, settings.max_attempts, takers, settings.lease_seconds,
                                  settings.task_timeout_seconds).handed

    async def accept_step(self) -> bool:
        """Confirm the orders split since the last step to Shared, which then no longer hands them out: one
        call every SALAD_INTAKE_INTERVAL, not one per split.

        An order whose report reached Shared meanwhile (a quick one completed) is confirmed by it and left out
        (`reported`). One not confirmed (Master stopped, Shared unreachable) is handed out again when its
        intake lease expires; the split then skips it and it is confirmed again.
        """
        if not self.unconfirmed:
            return False
        ids = list(islice(self.unconfirmed, ACCEPT_BATCH))
        answer = await send(self.http, "POST", f"{self.shared_url}/internal/v1/orders/accept", {"ids": ids})
        answer.raise_for_status("intake confirmation")
        for order_id in ids:  # only once confirmed: a failed or cancelled call leaves them to retry
            self.unconfirmed.pop(order_id, None)
        log.info("took %d order(s) from Shared", len(ids))
        return bool(self.unconfirmed)

    def reported(self, order_ids: list[int]) -> None:
        """Shared took reports of these orders, which confirm them: no call needed (OutboxRelay)."""
        for order_id in order_ids:
            self.unconfirmed.pop(order_id, None)

    async def confirm_all(self) -> None:
        """Confirm every split order (when Master stops), a batch at a time."""
        while self.unconfirmed:
            await self.accept_step()


class Reaper:
    """Requeues tasks whose worker stopped heartbeating; after a silence of every replica's reaper, extends
    the running leases instead (tasks.reaper_pass)."""

    def __init__(self, engine: Engine, signal: QueueSignal, lease_seconds: float) -> None:
        self.engine, self.signal, self.lease_seconds = engine, signal, lease_seconds

    async def step(self) -> bool:
        done = await to_thread.run_sync(tasks.reaper_pass, self.engine, self.lease_seconds)
        if done.extended:
            since = "before" if done.silence is None else f"for {done.silence:.1f} s"
            log.warning("no reaper ran %s: extended %d running lease(s), whose workers could not heartbeat",
                        since, done.extended)
        if done.reaped:
            log.warning("requeued or failed %d task(s) with an expired lease", done.reaped)
            self.signal.fire()
        return done.reaped == tasks.REAP_BATCH


class OutboxRelay:
    """Reports orders' state changes to Shared until Shared acknowledges (at least once; Shared applies
    each version once), and with them the latest fruit counts of the orders whose counts changed."""

    def __init__(self, engine: Engine, client: httpx.Client, interval: float = 0.0,
                 on_reported: Callable[[list[int]], None] = lambda order_ids: None) -> None:
        """`interval`: seconds between passes when none is woken (SALAD_OUTBOX_INTERVAL); `on_reported` is
        told the orders whose reports Shared took (called in the relay's thread)."""
        self.engine, self.client, self.interval = engine, client, interval
        self.on_reported = on_reported
        self.counted_all_at = -interval  # when a pass last took every changed count (monotonic)
        self.outbox_read_at = -interval  # when a pass last read the outbox (monotonic)
        self.more_due = False  # that read filled a batch: the next pass reads again
        self.in_hand: deque[tasks.Completion] = deque()  # completions this replica's exchanges handed over
        self.acknowledged: list[int] = []  # reports Shared took, to record as delivered with the next pass
        self.acknowledged_at = utcnow()

    def hand(self, completed: list[tasks.Completion]) -> None:
        """Reports of orders this replica's exchanges just completed, for the next pass to send as they are:
        the other replicas' relays take them from the outbox only if this one has not acknowledged them within
        SENDING_SECONDS (SQL.exchange)."""
        self.in_hand.extend(completed)

    def take_in_hand(self) -> list[tasks.Completion]:
        """Up to a batch of the reports in hand, the first handed first."""
        return [self.in_hand.popleft() for _ in range(min(len(self.in_hand), OUTBOX_BATCH))]

    def deliver_batch(self) -> bool:
        """Send due reports and changed counts to Shared in one call. One statement takes them and records
        what Shared acknowledged in the passes before (SQL.claim_reports: all a pass costs while there is
        nothing to send); after the call, a statement only if Shared did not take a report, which is tried
        again later. Counts that did not reach Shared are flagged again. True when a batch was full, or
        reports remain in hand.

        A pass woken by a completion within `interval` of the last one that read the outbox sends the reports
        in hand alone, without a statement, unless that read filled a batch. Counts go at most every
        `interval` (Shared shows a completed order's fruits all done whatever counts it holds)."""
        now, started = utcnow(), time.monotonic()
        in_hand = self.take_in_hand()
        if in_hand and not self.more_due and started - self.outbox_read_at < self.interval:
            try:
                self.send(in_hand, [])
            except Exception:  # before Shared's answer was recorded: they stay in hand
                self.put_back(in_hand)
                raise
            return bool(self.in_hand)
        self.outbox_read_at = started
        all_counts = started - self.counted_all_at >= self.interval
        try:
            with autocommit(self.engine) as connection:
                rows = connection.execute(SQL.claim_reports, dict(
                    now=now, until=now + timedelta(seconds=SENDING_SECONDS), limit=OUTBOX_BATCH,
                    progress_limit=PROGRESS_BATCH if all_counts else 0,
                    acknowledged=self.acknowledged, acknowledged_at=self.acknowledged_at)).all()
        except Exception:  # the database away: the reports in hand wait for the next pass
            self.put_back(in_hand)
            raise
        self.acknowledged = []
        in_hand_ids = {report.id for report in in_hand}  # due already if this relay was slow: sent once
        due = [row for row in rows if row.kind == "report" and row.id not in in_hand_ids]
        changed = [row.order_id for row in rows if row.kind == "counts"]
        self.more_due = len(due) == OUTBOX_BATCH or len(changed) == PROGRESS_BATCH
        reports = due + in_hand
        if all_counts and len(changed) < PROGRESS_BATCH:
            self.counted_all_at = started
        delivered = False
        try:
            delivered = self.send(reports, changed)
        finally:
            if changed and not delivered:  # an error, or Shared unreachable: the next pass reports them
                with autocommit(self.engine) as connection:
                    connection.execute(SQL.progress_due_again, dict(ids=changed))
        return self.more_due or bool(self.in_hand)

    def put_back(self, in_hand: list[tasks.Completion]) -> None:
        """Reports taken from the hand and not sent: first again."""
        self.in_hand.extendleft(reversed(in_hand))

    def send(self, reports: list, changed: list[int]) -> bool:
        """The taken `reports`, and the counts of the `changed` orders, read now. Returns whether Shared took
        the call; records which reports it acknowledged (an unknown order's report is tried again later)."""
        progress = []
        if changed:
            with autocommit(self.engine) as connection:
                progress = [progress_of(row) for row in connection.execute(SQL.fruit_counts, dict(ids=changed))]
        if not reports and not progress:
            return True
        body = [OrderReport(order_id=row.order_id, version=row.version, status=row.status,
                            finished_at=row.finished_at, preparation_time=row.preparation_time,
                            failure_reason=row.failure_reason).model_dump(mode="json") for row in reports]
        known, delivered, problem = set(), False, "unknown order"
        try:
            response = self.client.post("/internal/v1/orders/reports", json={"reports": body, "progress": progress})
            response.raise_for_status()
            known, delivered = {state["id"] for state in response.json()}, True
        except httpx.HTTPError as exc:
            problem = str(exc)
        taken = [row for row in reports if row.order_id in known]
        if taken:
            self.on_reported([row.order_id for row in taken])
        acknowledged = [row.id for row in taken]
        # Left to the next read of the outbox, well before another replica would send them again.
        if len(acknowledged) == len(reports) and self.interval <= ACKS_HELD_MAX:
            if not self.acknowledged:
                self.acknowledged_at = utcnow()
            self.acknowledged += acknowledged
            return delivered
        self.record_sent([row.id for row in reports], acknowledged)
        for row in reports:
            if row.order_id not in known:
                log.warning("could not report order %d to Shared (attempt %d): %s", row.order_id,
                            row.attempts + 1, problem)
        return delivered

    def record_sent(self, ids: list[int], acknowledged: list[int]) -> None:
        """Reports `ids` were sent: the `acknowledged` are delivered, the others due again after a backoff."""
        with autocommit(self.engine) as connection:
            connection.execute(SQL.reports_sent, dict(ids=ids, delivered=acknowledged, now=utcnow(),
                                                      max_backoff=MAX_BACKOFF))

    def finish(self) -> None:
        """Send the reports in hand, and record those Shared acknowledged now (Master stops): else other
        replicas send them later."""
        try:
            while self.in_hand:
                self.send(self.take_in_hand(), [])
        finally:
            if self.acknowledged:
                self.record_sent(self.acknowledged, self.acknowledged)
                self.acknowledged = []

    async def step(self) -> bool:
        return await to_thread.run_sync(self.deliver_batch)


def progress_of(row) -> dict:
    """A row of SQL.fruit_counts as the progress report Shared takes."""
    counts = FruitCounts(queued=row.queued, running=row.running, done=row.done, failed=row.failed)
    return OrderProgress(order_id=row.order_id, counts=counts, counted_at=row.counted_at).model_dump(mode="json")
