"""The exchanges and claims of concurrent requests, run together: one statement and one commit for all.

With hundreds of single-slot workers, each result is an exchange of its own. Run one statement each, the
results of an order waited on its countdown row one commit after another, the claims walked the queue's
index side by side, and each request cost Master a round trip (about 350 tasks/s with 1,000 workers).
Here a replica runs at most RUNNING_AT_ONCE exchange statements at a time: the requests that arrive while
they all run go together in the next one (group commit). A request runs at once while fewer run, as before
(a few workers' large exchanges do not wait on each other); under load each statement carries more
requests, never waiting for a timer.

Failures and retried requests are first prepared on their own (tasks.prepare_exchange), as are, after the
statement, successes it did not record (a stale lease, a retried post): both are rare.

The reports of the orders a statement completes go to the replica's relay at once (`report_to`), which
sends them without reading them back from the outbox: they are due to the other replicas' relays only after
`reports_held` seconds, as a report a relay took to send.
"""

import asyncio
from collections.abc import Callable, Sequence
from contextlib import suppress

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError

from salad.contracts.work import LeasedTask, Report, ResultAck
from salad.master import tasks
from salad.master.metrics import EXCHANGE_BATCH
from salad.master.tasks import Completion, Exchange, Exchanged

MAX_TOGETHER = 64  # requests in one statement; the others go in the next
RUNNING_AT_ONCE = 4  # a replica's exchange statements running at the same time (its pool has 10 connections)


class Exchanges:
    """A replica's exchange statements, a few at a time, each carrying the requests waiting for one."""

    def __init__(self, engine: Engine, lease_seconds: float, timeout_seconds: float) -> None:
        self.engine, self.lease_seconds, self.timeout_seconds = engine, lease_seconds, timeout_seconds
        self.on_completed: Callable[[list[Completion]], None] = lambda completed: None
        self.reports_held = 0.0  # no relay takes them: due to every relay at once
        self._waiting: list[tuple[Exchange, asyncio.Future]] = []
        self._running: set[asyncio.Task] = set()  # the statements' runners (referenced while they run)

    def report_to(self, hand: Callable[[list[Completion]], None], held: float) -> None:
        """Hand the reports of the orders a statement completes to `hand` (the replica's relay), which sends
        them at once; they are due to the other replicas' relays only `held` seconds later."""
        self.on_completed, self.reports_held = hand, held

    async def exchange(self, worker: str, reports: list[Report], max_tasks: int, lease: str,
                       retry: bool = False) -> tuple[list[ResultAck], list[LeasedTask]]:
        """tasks.exchange, with the statement shared with the other requests of the moment."""
        args = (self.engine, worker, reports, max_tasks, self.lease_seconds, self.timeout_seconds, lease, retry)
        if tasks.needs_preparing(reports, retry):
            prepared = await run_in_threadpool(tasks.prepare_exchange, *args)
        else:
            prepared = tasks.prepare_exchange(*args)  # no database work: see needs_preparing
        exchanged = await self.together(prepared.part)
        missed = tasks.unrecorded(prepared, exchanged)
        apart = await run_in_threadpool(tasks.record_one_by_one, self.engine, missed) if missed else {}
        return tasks.answer_exchange(reports, prepared, exchanged, apart)

    async def claim(self, worker: str, max_tasks: int, lease: str) -> list[LeasedTask]:
        """tasks.claim, with the statement shared with the other requests of the moment."""
        return (await self.exchange(worker, [], max_tasks, lease))[1]

    async def together(self, part: Exchange) -> Exchanged:
        """Run `part` in the next exchange statement (at once when fewer than RUNNING_AT_ONCE run). A caller
        cancelled meanwhile still waits for the statement to end, as a thread's would: its tasks may be leased
        by then, and a retry of its request must find them (wakeup.Attempts)."""
        if not part.successes and not part.terms["max_tasks"]:
            return Exchanged(set(), [])
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((part, answer))
        if len(self._running) < RUNNING_AT_ONCE:
            runner = asyncio.create_task(self._run_waiting())
            self._running.add(runner)
            runner.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            with suppress(Exception, asyncio.CancelledError):
                await answer
            raise

    async def _run_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_TOGETHER], self._waiting[MAX_TOGETHER:]
                await self._run([part for part, _ in batch], [answer for _, answer in batch])
        except asyncio.CancelledError:  # the service stops: nobody will run what still waits
            for _, answer in self._waiting:
                answer.cancel()
            self._waiting = []
            raise

    async def _run(self, parts: Sequence[Exchange], answers: Sequence[asyncio.Future]) -> None:
        """One statement for `parts`. If PostgreSQL refuses a value of one of them (DataError, IntegrityError),
        each part runs again alone, so that one request's failure is only its own. Any other error (the database
        away, a timeout) is every part's: running them one by one would only wait it out again and again."""
        try:
            done = await run_in_threadpool(tasks.exchange_together, self.engine, parts, self.timeout_seconds,
                                           self.reports_held)
        except (DataError, IntegrityError) as exc:
            if len(parts) == 1:
                settle(answers[0], exception=exc)
                return
            for part, answer in zip(parts, answers):
                await self._run([part], [answer])
            return
        except Exception as exc:
            for answer in answers:
                settle(answer, exception=exc)
            return
        EXCHANGE_BATCH.observe(len(parts))
        if done.completed:
            self.on_completed(done.completed)
        for answer, exchanged in zip(answers, done.parts):
            settle(answer, exchanged)


def settle(answer: asyncio.Future, result: Exchanged | None = None, exception: Exception | None = None) -> None:
    """Answer a waiting request, unless it was cancelled (the service stops)."""
    if answer.done():
        return
    if exception is not None:
        answer.set_exception(exception)
    else:
        answer.set_result(result)
