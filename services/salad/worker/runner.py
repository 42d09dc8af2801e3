"""The worker: N slots, long-poll claims, heartbeats, results; a graceful stop on SIGTERM.

On SIGTERM it stops claiming, lets in-flight fruits finish within `grace_seconds`, then hands the
unfinished ones back to Master (release), so nothing waits for a lease to expire.
"""

import asyncio
import logging
import signal
import time
from contextlib import suppress

import httpx

from salad.core.metrics import WORKER_BUSY_SLOTS, WORKER_SLOTS, WORKER_TASKS
from salad.core.settings import WorkerSettings
from salad.master.schemas import LeasedTask
from salad.worker.client import LeaseLost, MasterClient

CLAIM_ERROR_DELAY = 1.0  # seconds before claiming again after Master failed to answer
MASTER_SILENCE_SECONDS = 15.0  # not ready when Master has not answered for a long-poll plus this long

log = logging.getLogger(__name__)


class Job:
    """One task being prepared: the fruit's sleep can be aborted; the result post cannot."""

    def __init__(self, task: LeasedTask) -> None:
        self.task = task
        self.abort = asyncio.Event()


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        token = settings.worker_token.get_secret_value() if settings.worker_token else None
        self.master = MasterClient(settings.master_url, settings.worker_name, settings.claim_wait,
                                   settings.retry_max_seconds, token)
        self.stopping = asyncio.Event()
        self.jobs: dict[asyncio.Task, Job] = {}
        self.last_contact = 0.0  # monotonic time Master last answered

    @property
    def ready(self) -> bool:
        silence = time.monotonic() - self.last_contact
        return not self.stopping.is_set() and silence < self.settings.claim_wait + MASTER_SILENCE_SECONDS

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new claims; %d task(s) in flight", len(self.jobs))
            self.stopping.set()

    async def run(self) -> None:
        WORKER_SLOTS.set(self.settings.slots)
        beats = asyncio.create_task(self.beat_forever())
        try:
            await self.claim_until_stopped()
            await self.drain()
        finally:
            beats.cancel()
            with suppress(Exception):
                await self.master.leave()
            await self.master.aclose()
        log.info("stopped")

    async def claim_until_stopped(self) -> None:
        while not self.stopping.is_set():
            free = self.settings.slots - len(self.jobs)
            if free <= 0:
                await self.wait_for(asyncio.wait(list(self.jobs), return_when=asyncio.FIRST_COMPLETED))
                continue
            try:
                leased = await self.wait_for(self.master.claim(free))
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("claim failed: %s", exc)
                await self.wait_for(asyncio.sleep(CLAIM_ERROR_DELAY))
                continue
            if leased is None:
                break  # stopping: a claim cut short leaves no task behind (its lease simply expires)
            self.last_contact = time.monotonic()
            for task in leased:
                job = Job(task)
                self.jobs[asyncio.create_task(self.prepare(job))] = job
            WORKER_BUSY_SLOTS.set(len(self.jobs))

    async def wait_for(self, awaitable):
        """Await `awaitable` unless a stop comes first (then cancel it and return None)."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await work
        return None

    async def drain(self) -> None:
        """Let in-flight tasks finish within the grace period; release the rest to Master."""
        if not self.jobs:
            return
        _, late = await asyncio.wait(list(self.jobs), timeout=self.settings.grace_seconds)
        for task in late:
            self.jobs[task].abort.set()
        if late:
            log.info("grace period over: handing %d task(s) back", len(late))
            await asyncio.wait(late)

    async def prepare(self, job: Job) -> None:
        task, outcome = job.task, "lost"
        heartbeats = asyncio.create_task(self.heartbeat_until_done(job))
        try:
            seconds = task.execution_time * self.settings.time_scale
            timed_out = seconds > task.timeout_seconds
            aborted = await self.sleep_unless_aborted(job, min(seconds, task.timeout_seconds))
            heartbeats.cancel()
            if aborted:
                outcome = await self.hand_back(task)
            elif timed_out:
                await self.master.result(task, "timed_out", f"stopped after {task.timeout_seconds:g} s "
                                                            f"on worker {self.settings.worker_name}")
                outcome = "timed_out"
                log.warning("task %d stopped: it ran past its %g s limit", task.id, task.timeout_seconds)
            else:
                await self.master.result(task, "succeeded", f"{task.id} {task.fruit} prepared in {seconds:g} seconds")
                outcome = "succeeded"
                log.info("task %d prepared", task.id, extra={"task_id": task.id, "order_id": task.order_id,
                                                            "fruit": task.fruit, "attempt": task.attempt})
        except LeaseLost:
            log.warning("task %d: lease lost, result dropped", task.id)
        except Exception as exc:
            log.error("task %d: could not report to Master: %s", task.id, exc)
        finally:
            heartbeats.cancel()
            WORKER_TASKS.labels(outcome).inc()
            self.jobs.pop(asyncio.current_task(), None)
            WORKER_BUSY_SLOTS.set(len(self.jobs))

    async def sleep_unless_aborted(self, job: Job, seconds: float) -> bool:
        """Prepare the fruit. True when aborted (grace period over, or the lease was lost)."""
        with suppress(TimeoutError):
            await asyncio.wait_for(job.abort.wait(), timeout=seconds)
        return job.abort.is_set()

    async def hand_back(self, task: LeasedTask) -> str:
        with suppress(LeaseLost):
            await self.master.release(task)
            log.info("task %d released", task.id)
            return "released"
        return "lost"

    async def heartbeat_until_done(self, job: Job) -> None:
        """Extend the lease every heartbeat_interval; a stale lease aborts the fruit."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await self.master.heartbeat(job.task)
            except LeaseLost:
                log.warning("task %d: lease lost, stopping it", job.task.id)
                job.abort.set()
                return
            except Exception as exc:  # Master briefly away: the next beat may get through
                log.warning("task %d: heartbeat failed: %s", job.task.id, exc)

    async def beat_forever(self) -> None:
        """Tell Master this worker is alive, with its slots and load."""
        while True:
            try:
                await self.master.beat(self.settings.slots, len(self.jobs))
                self.last_contact = time.monotonic()
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_interval)


def install_stop_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
