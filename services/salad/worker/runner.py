"""The worker: N slots, long-poll claims, heartbeats, results; a graceful stop on SIGTERM.

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
from salad.core.metrics import WORKER_BUSY_SLOTS, WORKER_SLOTS, WORKER_TASKS
from salad.core.settings import WorkerSettings
from salad.worker.client import Finished, LeaseLost, MasterClient

CLAIM_ERROR_DELAY = 1.0  # seconds before claiming again after Master failed to answer
MASTER_SILENCE_SECONDS = 15.0  # not ready when Master has not answered for a long-poll plus this long
MAX_RESULT_HOLD = 1.0  # seconds a result may wait for others while prefetched tasks keep the slots busy
RESULT_LINGER = 0.005  # seconds a result waits for fruits still being prepared to finish and join its batch

log = logging.getLogger(__name__)


class Job:
    """One leased task: waiting for a slot (prefetched), then being prepared. Either can be aborted."""

    def __init__(self, task: LeasedTask) -> None:
        self.task = task
        self.abort = asyncio.Event()
        self.started_at: float | None = None  # monotonic time it took a slot
        self.finished = False  # its result waits to be reported
        # A timer until the first heartbeat is due, then the task that beats: a short fruit needs no task.
        self.heartbeats: asyncio.TimerHandle | asyncio.Task | None = None

    @property
    def started(self) -> bool:
        return self.started_at is not None

    def stop_heartbeats(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.cancel()


class Worker:
    """Prepares fruits in `slots` concurrent jobs: one report to Master in flight at a time, beside at most
    one long-poll.

    A finished fruit frees its slot at once; its result waits in `finished` and goes to Master with every
    other result finished meanwhile (or within RESULT_LINGER), in the request that also leases the free
    slots' next tasks (POST /v1/tasks/exchange). Free slots no request has asked for (Master had fewer tasks
    than asked, or a task was handed back) are asked for by a long-poll once a slot has no fruit; while it
    waits, results still ask for the slots they free.
    With `prefetch`, that many tasks more are leased ahead and wait (heartbeating) for a slot, so a slot
    that frees starts its next fruit without waiting for Master; on a stop they are handed back at once.
    While prefetched tasks are still waiting, results are held (up to MAX_RESULT_HOLD) and go together
    when the last one starts: one exchange per `prefetch` short tasks instead of one per task.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        token = settings.worker_token.get_secret_value() if settings.worker_token else None
        self.master = MasterClient(settings.master_url, settings.worker_name, settings.claim_wait,
                                   settings.retry_max_seconds, token)
        self.stopping = asyncio.Event()
        self.jobs: dict[asyncio.Task, Job] = {}  # leased tasks: prefetched or being prepared
        self.slots = asyncio.Semaphore(settings.slots)
        self.preparing = 0
        self.finished: list[Finished] = []  # results not yet sent to Master
        self.news = asyncio.Event()  # a fruit finished or a slot freed
        # Some free slot is asked for by no request (Master had fewer tasks than asked, or a task was handed
        # back): a long-poll asks for every free slot. Other slots are asked for with the results that freed them.
        self.unfilled = True
        self.claim_asked = 0  # slots the long-poll in flight asks for
        self.last_contact = 0.0  # monotonic time Master last answered

    @property
    def ready(self) -> bool:
        silence = time.monotonic() - self.last_contact
        return not self.stopping.is_set() and silence < self.settings.claim_wait + MASTER_SILENCE_SECONDS

    @property
    def free_slots(self) -> int:
        """How many tasks to ask for: free slots, plus the prefetch not yet used."""
        wanted = self.settings.slots + self.settings.prefetch - len(self.jobs)
        return 0 if self.stopping.is_set() else max(0, wanted)

    @property
    def slot_without_fruit(self) -> bool:
        """Is a slot neither preparing a fruit nor holding one? Only then is a long-poll sent: fruits held
        ahead are asked for with results. A long-poll's size is set when it is sent, so one for the prefetch
        alone, still waiting when the worker falls idle, would have it take an order's fruits in two rounds
        between other workers' claims instead of all it can at once, as Master plans (master/hand_out.py)."""
        return len(self.jobs) < self.settings.slots

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new claims; %d task(s) in flight", len(self.jobs))
            self.stopping.set()
            for job in self.jobs.values():
                if not job.started:  # prefetched: handed back now rather than after the grace period
                    job.abort.set()

    async def run(self) -> None:
        WORKER_SLOTS.set(self.settings.slots)
        WORKER_BUSY_SLOTS.set_function(lambda: self.preparing)  # read when scraped, not set on every change
        beats = asyncio.create_task(self.beat_forever())
        try:
            await self.work_until_stopped()
            await self.drain()
        finally:
            beats.cancel()
            with suppress(Exception):
                await self.master.leave()
            await self.master.aclose()
        log.info("stopped")

    async def work_until_stopped(self) -> None:
        claim: asyncio.Task | None = None  # a long-poll for tasks, holding the slots free when it was sent
        stop = asyncio.create_task(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                self.news.clear()
                if self.finished and self.hold_for() == 0:
                    await self.report()
                    continue
                if (claim is None and not self.finished and self.free_slots > 0 and self.slot_without_fruit
                        and (self.unfilled or not self.jobs)):
                    self.claim_asked, self.unfilled = self.free_slots, False
                    claim = asyncio.create_task(
                        self.master.exchange([], self.claim_asked, self.settings.claim_wait))
                news = asyncio.create_task(self.news.wait())
                waiting = {news, stop} | ({claim} if claim else set())
                await asyncio.wait(waiting, timeout=self.hold_for(), return_when=asyncio.FIRST_COMPLETED)
                news.cancel()
                if claim is not None and claim.done():
                    asked, self.claim_asked = self.claim_asked, 0
                    await self.claimed(claim, asked)
                    claim = None
        finally:
            stop.cancel()
            if claim is not None:  # stopping: a claim cut short leaves no task behind (its lease simply expires)
                claim.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await claim

    def hold_for(self) -> float | None:
        """Seconds the finished results may still wait for more (0: report now; None: nothing to report)."""
        if not self.finished:
            return None
        if not self.settings.prefetch or all(job.started for job in self.jobs.values()):
            return 0.0
        return max(0.0, self.finished[0].at + MAX_RESULT_HOLD - time.monotonic())

    async def claimed(self, claim: asyncio.Task, asked: int) -> None:
        try:
            _, leased = claim.result()
        except Exception as exc:
            log.warning("claim failed: %s", exc)
            self.unfilled = True
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), CLAIM_ERROR_DELAY)
            return
        self.last_contact = time.monotonic()
        self.start(leased, asked)

    def start(self, leased: list[LeasedTask], asked: int) -> None:
        if len(leased) < asked:
            self.unfilled = True
        for task in leased:
            job = Job(task)
            if self.stopping.is_set():  # leased by a request sent before the stop: handed back at once
                job.abort.set()
            self.jobs[asyncio.create_task(self.prepare(job))] = job

    async def report(self) -> None:
        """Send every finished result and lease the next tasks of the free slots no long-poll asks for."""
        await self.linger()
        batch, self.finished = self.finished, []
        asked = max(0, self.free_slots - self.claim_asked)  # none once stopping
        try:
            acks, leased = await self.master.exchange(batch, asked, 0)
        except Exception as exc:
            log.error("could not report %d result(s) to Master: %s", len(batch), exc)
            WORKER_TASKS.labels("lost").inc(len(batch))
            self.unfilled = True
            return
        self.last_contact = time.monotonic()
        self.acknowledged(batch, acks)
        self.start(leased, asked)

    async def linger(self) -> None:
        """Let fruits finishing about now join the batch (as Kafka's linger.ms): many short fruits then
        go in one exchange, not one each. Waits at most RESULT_LINGER, and only while fruits that were being
        prepared when the batch's first result came still are: a worker whose slots are all free, or whose
        only fruit being prepared is the one held ahead that just took the freed slot, reports at once."""
        first = self.finished[0].at
        deadline = time.monotonic() + RESULT_LINGER
        await asyncio.sleep(0)
        while self.preparing_since(first) and (remaining := deadline - time.monotonic()) > 0:
            self.news.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), remaining)

    def preparing_since(self, moment: float) -> bool:
        """Is a fruit that took its slot at or before `moment` still being prepared?"""
        return any(job.started_at is not None and job.started_at <= moment and not job.finished
                   for job in self.jobs.values())

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
        aborted = False
        while self.jobs or self.finished:
            self.news.clear()
            if self.finished:
                await self.report()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not aborted:
                log.info("grace period over: handing %d task(s) back", len(self.jobs))
                for job in self.jobs.values():
                    job.abort.set()
                aborted = True
            with suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), timeout=None if aborted else remaining)

    async def prepare(self, job: Job) -> None:
        task = job.task
        job.heartbeats = asyncio.get_running_loop().call_later(
            self.settings.heartbeat_interval, self.start_heartbeats, job)
        try:
            if not await self.take_slot(job):
                job.stop_heartbeats()
                WORKER_TASKS.labels(await self.hand_back(task)).inc()
                return
            try:
                await self.prepare_in_slot(job)
            finally:
                self.slots.release()
                self.preparing -= 1
        finally:
            job.stop_heartbeats()
            self.jobs.pop(asyncio.current_task(), None)
            if not job.finished:  # handed back: its slot frees without a result to ask for its next task
                self.unfilled = True
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
        self.preparing += 1
        if self.finished:  # held results may be due: this may have been the last prefetched task
            self.news.set()
        return True

    async def prepare_in_slot(self, job: Job) -> None:
        task = job.task
        seconds = task.execution_time * self.settings.time_scale
        aborted = await self.sleep_unless_aborted(job, min(seconds, task.timeout_seconds))
        job.stop_heartbeats()
        if aborted:
            WORKER_TASKS.labels(await self.hand_back(task)).inc()
        elif seconds > task.timeout_seconds:
            log.warning("task %d stopped: it ran past its %g s limit", task.id, task.timeout_seconds)
            self.finish(job, "timed_out", f"stopped after {task.timeout_seconds:g} s on worker "
                                          f"{self.settings.worker_name}")
        else:
            self.finish(job, "succeeded", f"{task.id} {task.fruit} prepared in {seconds:g} seconds")

    def finish(self, job: Job, outcome: str, text: str) -> None:
        """The fruit's result waits in `finished` for the next report."""
        job.finished = True
        self.finished.append(Finished(job.task, outcome, text))

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

    def start_heartbeats(self, job: Job) -> None:
        job.heartbeats = asyncio.create_task(self.heartbeat_until_done(job))

    async def heartbeat_until_done(self, job: Job) -> None:
        """Extend the lease now and every heartbeat_interval; a stale lease aborts the fruit."""
        while True:
            try:
                await self.master.heartbeat(job.task)
            except LeaseLost:
                log.warning("task %d: lease lost, stopping it", job.task.id)
                job.abort.set()
                return
            except Exception as exc:  # Master briefly away: the next beat may get through
                log.warning("task %d: heartbeat failed: %s", job.task.id, exc)
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def beat_forever(self) -> None:
        """Tell Master this worker is alive, with its slots, prefetch and load."""
        while True:
            try:
                await self.master.beat(self.settings.slots, self.settings.prefetch, self.preparing)
                self.last_contact = time.monotonic()
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_interval)


def install_stop_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
