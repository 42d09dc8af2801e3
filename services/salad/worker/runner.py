"""The worker: N slots, long-poll claims, lease heartbeats, results, registry check-ins; a graceful stop.

On SIGTERM it stops claiming, lets in-flight fruits finish within `grace_seconds`, then hands the
unfinished ones back to Master (release), so nothing waits for a lease to expire.
"""

import asyncio
import logging
import signal
import time
from collections import Counter
from contextlib import suppress

from salad.contracts.work import LeasedTask, ResultAck
from salad.core.settings import WorkerSettings
from salad.worker import decisions
from salad.worker.client import Finished, LeaseLost, MasterClient
from salad.worker.decisions import Drain, State
from salad.worker.metrics import WORKER_BUSY_SLOTS, WORKER_SLOTS, WORKER_TASKS

CLAIM_ERROR_DELAY = 1.0  # seconds before claiming again after Master failed to answer

log = logging.getLogger(__name__)


class Job:
    """One leased task: waiting for a slot (prefetched), then being prepared. Either can be aborted."""

    def __init__(self, task: LeasedTask) -> None:
        self.task = task
        self.abort = asyncio.Event()
        self.started_at: float | None = None  # monotonic time it took a slot
        # A timer until the first lease heartbeat is due, then the task that beats: a short fruit needs none.
        self.lease_heartbeats: asyncio.TimerHandle | asyncio.Task | None = None

    @property
    def in_slot(self) -> bool:
        return self.started_at is not None

    def stop_lease_heartbeats(self) -> None:
        if self.lease_heartbeats is not None:
            self.lease_heartbeats.cancel()


class Runner:
    """Prepares fruits in `slots` concurrent jobs: one report to Master in flight at a time, beside at most
    one long-poll.

    A finished fruit frees its slot at once; its result waits in `finished` and goes to Master with every
    other result finished meanwhile (or lingering briefly), in the request that also leases the free
    slots' next tasks (POST /v1/tasks/exchange). Free slots no request has asked for (Master had fewer tasks
    than asked, or a task was handed back) are asked for by a long-poll once a slot has no fruit; while it
    waits, results still ask for the slots they free.
    With `prefetch`, that many tasks more are leased ahead and wait (heartbeating) for a slot, so a slot
    that frees starts its next fruit without waiting for Master; on a stop they are handed back at once.
    While prefetched tasks are still waiting, results are held (up to MAX_RESULT_HOLD) and go together
    when the last one starts: one exchange per `prefetch` short tasks instead of one per task.
    What to ask for, when to send results and what to hand back on a stop is decided in decisions.py, from
    a `State` the loop gathers; the loop does the I/O.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        token = settings.worker_token.get_secret_value() if settings.worker_token else None
        self.master = MasterClient(settings.master_url, settings.worker_name, settings.claim_wait,
                                   settings.retry_max_seconds, token)
        self.stopping = asyncio.Event()
        self.jobs: dict[asyncio.Task, Job] = {}  # leased tasks: prefetched or being prepared
        self.slots = asyncio.Semaphore(settings.slots)
        self.busy = 0  # jobs in a slot (preparing a fruit, or handing it back)
        self.finished: list[Finished] = []  # results not yet sent to Master
        self.news = asyncio.Event()  # a fruit finished or a slot freed
        self.last_contact = 0.0  # monotonic time Master last answered

    @property
    def ready(self) -> bool:
        stopping, claim_wait = self.stopping.is_set(), self.settings.claim_wait
        return decisions.ready(stopping, self.last_contact, time.monotonic(), claim_wait)

    def state(self, polling: int = 0) -> State:
        """The worker now, as the decisions read it; `polling`: tasks the long-poll in flight asks for."""
        finished = self.finished
        return State(self.settings.slots, self.settings.prefetch, held=len(self.jobs), busy=self.busy,
                     results=len(finished), first_result_at=finished[0].at if finished else None,
                     polling=polling, stopping=self.stopping.is_set())

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new claims; %d task(s) in flight", len(self.jobs))
            self.stopping.set()
            for job in self.jobs.values():
                if decisions.hand_back_at_once(self.stopping.is_set(), job.in_slot):
                    job.abort.set()

    async def run(self) -> None:
        WORKER_SLOTS.set(self.settings.slots)
        WORKER_BUSY_SLOTS.set_function(lambda: self.busy)  # read when scraped, not set on every change
        check_ins = asyncio.create_task(self.check_in_forever())
        try:
            await self.work_until_stopped()
            await self.drain()
        finally:
            check_ins.cancel()
            with suppress(Exception):
                await self.master.leave()
            await self.master.aclose()
        log.info("stopped")

    async def work_until_stopped(self) -> None:
        claim: asyncio.Task | None = None  # the long-poll in flight
        polling = 0  # tasks it asks for
        stop = asyncio.create_task(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                self.news.clear()
                state = self.state(polling)
                if decisions.result_hold(state, time.monotonic()) == 0:
                    await self.report(polling)
                    continue
                if ask := decisions.long_poll(state, self.settings.claim_wait):
                    polling = ask.tasks
                    claim = asyncio.create_task(self.master.exchange([], ask.tasks, ask.wait))
                news = asyncio.create_task(self.news.wait())
                waiting = {news, stop} | ({claim} if claim else set())
                await asyncio.wait(waiting, timeout=decisions.result_hold(state, time.monotonic()),
                                   return_when=asyncio.FIRST_COMPLETED)
                news.cancel()
                if claim is not None and claim.done():
                    answered, claim, polling = claim, None, 0
                    await self.claimed(answered)
        finally:
            stop.cancel()
            if claim is not None:  # stopping: a claim cut short leaves no task behind (its lease simply expires)
                claim.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await claim

    async def claimed(self, claim: asyncio.Task) -> None:
        try:
            _, leased = claim.result()
        except Exception as exc:
            log.warning("claim failed: %s", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), CLAIM_ERROR_DELAY)
            return
        self.last_contact = time.monotonic()
        self.start(leased)

    def start(self, leased: list[LeasedTask]) -> None:
        for task in leased:
            job = Job(task)
            if decisions.hand_back_at_once(self.stopping.is_set(), in_slot=False):
                job.abort.set()
            self.jobs[asyncio.create_task(self.prepare(job))] = job

    async def report(self, polling: int = 0) -> None:
        """Send every finished result and lease the next tasks of the free slots the long-poll in flight
        (asking for `polling` tasks) does not ask for."""
        await self.linger()
        ask = decisions.with_results(self.state(polling))
        batch, self.finished = self.finished, []
        try:
            acks, leased = await self.master.exchange(batch, ask.tasks, ask.wait)
        except Exception as exc:
            log.error("could not report %d result(s) to Master: %s", len(batch), exc)
            WORKER_TASKS.labels("lost").inc(len(batch))
            return
        self.last_contact = time.monotonic()
        self.acknowledged(batch, acks)
        self.start(leased)

    async def linger(self) -> None:
        """Let fruits finishing about now join the batch, for as long as decisions.linger says."""
        first, began = self.finished[0].at, time.monotonic()
        await asyncio.sleep(0)
        while (left := decisions.linger(first, self.oldest_in_slot(), began, time.monotonic())) > 0:
            self.news.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), left)

    def oldest_in_slot(self) -> float | None:
        """When the fruit in a slot the longest took it (None: every slot is free)."""
        return min((job.started_at for job in self.jobs.values() if job.started_at is not None), default=None)

    def acknowledged(self, batch: list[Finished], acks: list[ResultAck]) -> None:
        """Count the outcomes of a reported batch (once per outcome) and log its successes in one line: a
        line per task cost the worker more CPU than preparing and reporting a short task did."""
        prepared, outcomes = [], Counter()
        for finished, ack in zip(batch, acks, strict=True):
            if ack.lease_lost or ack.status is None:
                log.warning("task %d: lease lost, result dropped", finished.task.id)
                outcomes["lost"] += 1
                continue
            outcomes[finished.outcome] += 1
            if finished.outcome == "succeeded":
                prepared.append(finished.task)
        for outcome, count in outcomes.items():
            WORKER_TASKS.labels(outcome).inc(count)
        if prepared:
            log.info("prepared %s", ", ".join(f"task {t.id} ({t.fruit}, order {t.order_id})" for t in prepared),
                     extra={"tasks": [{"task_id": t.id, "order_id": t.order_id, "fruit": t.fruit,
                                       "attempt": t.attempt} for t in prepared]})

    async def drain(self) -> None:
        """Let in-flight fruits finish within the grace period, reporting them; hand the rest back."""
        deadline = time.monotonic() + self.settings.grace_seconds
        handed_back = False
        while True:
            self.news.clear()
            step, wait = decisions.drain(self.state(), deadline - time.monotonic(), handed_back)
            if step is Drain.LEAVE:
                return
            if step is Drain.REPORT:
                await self.report()
                continue
            if step is Drain.HAND_BACK:
                log.info("grace period over: handing %d task(s) back", len(self.jobs))
                for job in self.jobs.values():
                    job.abort.set()
                handed_back = True
            with suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), timeout=wait)

    async def prepare(self, job: Job) -> None:
        task = job.task
        job.lease_heartbeats = asyncio.get_running_loop().call_later(
            self.settings.heartbeat_interval, self.start_lease_heartbeats, job)
        try:
            if not await self.take_slot(job):
                job.stop_lease_heartbeats()
                WORKER_TASKS.labels(await self.hand_back(task)).inc()
                return
            try:
                await self.prepare_in_slot(job)
            finally:
                self.slots.release()
                self.busy -= 1
        finally:
            job.stop_lease_heartbeats()
            self.jobs.pop(asyncio.current_task(), None)
            self.news.set()

    async def take_slot(self, job: Job) -> bool:
        """Wait for a free slot (a prefetched task); False when the job is aborted first."""
        if self.slots.locked():
            acquire = asyncio.ensure_future(self.slots.acquire())
            aborted = asyncio.ensure_future(job.abort.wait())
            await asyncio.wait({acquire, aborted}, return_when=asyncio.FIRST_COMPLETED)
            aborted.cancel()
            if not acquire.done():
                acquire.cancel()
                with suppress(asyncio.CancelledError):
                    await acquire
            if not acquire.done() or acquire.cancelled():
                return False
        else:
            await self.slots.acquire()
        if job.abort.is_set():
            self.slots.release()
            return False
        job.started_at = time.monotonic()
        self.busy += 1
        if self.finished:  # held results may be due: this may have been the last prefetched task
            self.news.set()
        return True

    async def prepare_in_slot(self, job: Job) -> None:
        task = job.task
        planned = decisions.preparation(task.execution_time, self.settings.time_scale, task.timeout_seconds)
        aborted = await self.sleep_unless_aborted(job, planned.spend)
        job.stop_lease_heartbeats()
        if aborted:
            WORKER_TASKS.labels(await self.hand_back(task)).inc()
            return
        if planned.outcome == "timed_out":
            log.warning("task %d stopped: it ran past its %g s limit", task.id, task.timeout_seconds)
            text = f"stopped after {task.timeout_seconds:g} s on worker {self.settings.worker_name}"
        else:
            text = f"{task.id} {task.fruit} prepared in {planned.seconds:g} seconds"
        self.finished.append(Finished(task, planned.outcome, text))  # waits for the next report

    async def sleep_unless_aborted(self, job: Job, seconds: float) -> bool:
        """Prepare the fruit. True when aborted (grace period over, or the lease was lost)."""
        if seconds > 0:
            with suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await job.abort.wait()
        return job.abort.is_set()

    async def hand_back(self, task: LeasedTask) -> str:
        try:
            await self.master.release(task)
        except LeaseLost:
            return "lost"
        except Exception as exc:  # its lease will expire and the reaper will queue it again
            log.error("task %d: could not hand it back to Master: %s", task.id, exc)
            return "lost"
        log.info("task %d released", task.id)
        return "released"

    def start_lease_heartbeats(self, job: Job) -> None:
        job.lease_heartbeats = asyncio.create_task(self.heartbeat_lease_until_done(job))

    async def heartbeat_lease_until_done(self, job: Job) -> None:
        """Extend the lease now and every heartbeat_interval; a stale lease aborts the fruit."""
        while True:
            try:
                await self.master.heartbeat_lease(job.task)
            except LeaseLost:
                log.warning("task %d: lease lost, stopping it", job.task.id)
                job.abort.set()
                return
            except Exception as exc:  # Master briefly away: the next beat may get through
                log.warning("task %d: lease heartbeat failed: %s", job.task.id, exc)
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def check_in_forever(self) -> None:
        """Tell Master's worker registry this worker is alive, with its slots, prefetch and load."""
        while True:
            try:
                await self.master.check_in(self.settings.slots, self.settings.prefetch, self.busy)
                self.last_contact = time.monotonic()
            except Exception as exc:
                log.warning("check-in with Master failed: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_interval)


def install_stop_handlers(runner: Runner) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
