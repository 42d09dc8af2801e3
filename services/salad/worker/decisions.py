"""What the worker decides, as pure functions of a snapshot of its state: how many tasks to ask Master for,
whether to long-poll, how long finished results wait, what a stopping worker does with its tasks.

runner.py gathers a `State`, asks these functions and does the I/O; they read no clock and change nothing,
so each is tested on its own (tests/test_worker_decisions.py).
"""

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

MASTER_SILENCE_SECONDS = 15.0  # not ready when Master has not answered for a long-poll plus this long
MAX_RESULT_HOLD = 1.0  # seconds a result may wait for others while prefetched tasks keep the slots busy
RESULT_LINGER = 0.005  # seconds a result waits for fruits still being prepared to finish and join its batch


@dataclass(frozen=True, slots=True)
class State:
    """The worker at one moment, as its decisions see it."""

    slots: int  # fruits prepared at once (SALAD_SLOTS)
    prefetch: int  # tasks leased ahead to wait for a slot (SALAD_PREFETCH)
    held: int = 0  # leased tasks not done with: waiting for a slot (prefetched) or in one
    busy: int = 0  # of those, the ones in a slot
    results: int = 0  # finished fruits whose results are not sent yet
    first_result_at: float | None = None  # monotonic time the oldest of those finished
    polling: int = 0  # tasks the long-poll in flight asks for; 0: none in flight
    stopping: bool = False  # SIGTERM came: no new work


class Ask(NamedTuple):
    """One request for tasks (POST /v1/tasks/exchange)."""

    tasks: int  # lease up to this many
    wait: float  # seconds Master may hold the request while no task is queued (0: answer at once)


def wanted(state: State) -> int:
    """How many tasks the worker can take: free slots plus the prefetch not used yet; none once stopping."""
    return 0 if state.stopping else max(0, state.slots + state.prefetch - state.held)


def long_poll(state: State, claim_wait: float) -> Ask | None:
    """The long-poll to send now (None: none), asking for every task the worker can take.

    Only when none is in flight and no result waits: results ask for the slots they free, so with neither,
    no request asks for the free slots (Master had fewer tasks than asked, a task was handed back, a request
    failed, or the worker just started). And only while a slot neither prepares a fruit nor holds one:
    fruits held ahead are asked for with results. A long-poll's size is set when it is sent, so one for the
    prefetch alone, still waiting when the worker falls idle, would have it take an order's fruits in two
    rounds between other workers' claims instead of all it can at once, as Master plans (master/hand_out.py).
    """
    if state.polling or state.results or state.held >= state.slots or not wanted(state):
        return None
    return Ask(wanted(state), claim_wait)


def with_results(state: State) -> Ask:
    """What the exchange that sends results asks for: every task the long-poll in flight does not, at once
    (results never wait on Master for tasks)."""
    return Ask(max(0, wanted(state) - state.polling), 0)


def result_hold(state: State, now: float) -> float | None:
    """Seconds the finished results may still wait for more (0: send them now; None: nothing to send).

    Without prefetch, or once every leased task has a slot, none. While prefetched tasks still wait for a
    slot, results wait for the last to start, at most MAX_RESULT_HOLD after the first finished: then one
    exchange goes per `prefetch` short tasks instead of one per task.
    """
    if not state.results:
        return None
    if not state.prefetch or state.busy >= state.held:
        return 0.0
    return max(0.0, state.first_result_at + MAX_RESULT_HOLD - now)


def linger(first_result_at: float, oldest_in_slot: float | None, began: float, now: float) -> float:
    """Seconds a batch about to be sent may still wait for fruits finishing about now (0: send it), as
    Kafka's linger.ms: many short fruits then go in one exchange, not one each.

    Only while a fruit that was in its slot when the batch's first result came is still being prepared
    (`oldest_in_slot`: when the longest-prepared fruit took its slot), and at most RESULT_LINGER after
    `began`: a worker whose slots are all free, or whose only fruit being prepared is the one held ahead
    that just took the freed slot, sends at once.
    """
    if oldest_in_slot is None or oldest_in_slot > first_result_at:
        return 0.0
    return max(0.0, began + RESULT_LINGER - now)


def hand_back_at_once(stopping: bool, in_slot: bool) -> bool:
    """Is a leased task handed back to Master now? Once stopping, one not in a slot (prefetched, or leased
    by a request sent just before the stop) is, not after the grace period; one in a slot may finish."""
    return stopping and not in_slot


class Drain(Enum):
    """A stopping worker's next step."""

    LEAVE = "nothing left: leave the registry"
    REPORT = "send the finished results"
    HAND_BACK = "grace period over: hand every task left back"
    WAIT = "wait for a fruit to finish or a task to be handed back"


def drain(state: State, grace_left: float, handed_back: bool) -> tuple[Drain, float | None]:
    """The next step while stopping, and the longest wait after it (None: until a fruit finishes or a
    task is handed back). Fruits in their slots finish within the grace period and are reported; then
    whatever is left goes back to Master."""
    if state.results:
        return Drain.REPORT, None
    if not state.held:
        return Drain.LEAVE, None
    if handed_back:
        return Drain.WAIT, None
    if grace_left <= 0:
        return Drain.HAND_BACK, None
    return Drain.WAIT, grace_left


class Preparation(NamedTuple):
    """How a fruit is prepared."""

    seconds: float  # its execution time, scaled by SALAD_TIME_SCALE
    spend: float  # seconds to spend on it: no longer than its time limit
    outcome: str  # if not aborted: "succeeded", or "timed_out" when it would run past its limit


def preparation(execution_time: float, time_scale: float, limit: float) -> Preparation:
    """A fruit that would run past its time limit is stopped there and reported timed out."""
    seconds = execution_time * time_scale
    return Preparation(seconds, min(seconds, limit), "timed_out" if seconds > limit else "succeeded")


def ready(stopping: bool, last_contact: float, now: float, claim_wait: float) -> bool:
    """Can the worker take work? Not once stopping, nor when Master has not answered (a check-in, a
    long-poll or a report) for a long-poll plus MASTER_SILENCE_SECONDS."""
    return not stopping and now - last_contact < claim_wait + MASTER_SILENCE_SECONDS
