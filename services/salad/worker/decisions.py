"""What the worker decides, as pure functions of a snapshot of its state: how many tasks to ask Master for,
whether to long-poll, how long finished results wait.

runner.py gathers a `State`, asks these functions and does the I/O; they read no clock and change nothing,
so each is tested on its own (tests/test_worker_decisions.py).
"""

from dataclasses import dataclass
from typing import NamedTuple

MAX_RESULT_HOLD = 1.0  # seconds a result may wait for others while prefetched tasks keep the slots busy


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
