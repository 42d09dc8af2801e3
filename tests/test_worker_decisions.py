"""The worker's decisions (worker/decisions.py), each on a table of states: no stack, no clock."""

import pytest
from salad.worker.decisions import MAX_RESULT_HOLD, Ask, State, long_poll, result_hold, wanted, with_results

WAIT = 10.0  # a long-poll's wait (SALAD_CLAIM_WAIT)


@pytest.mark.parametrize(("state", "expected"), [
    (State(slots=4, prefetch=0), 4),
    (State(slots=4, prefetch=2), 6),
    (State(slots=4, prefetch=2, held=5, busy=4), 1),
    (State(slots=4, prefetch=2, held=6, busy=4), 0),
    (State(slots=4, prefetch=0, held=1, busy=1, results=3, polling=2), 3),  # what a report and a long-poll share
    (State(slots=4, prefetch=2, stopping=True), 0),
    (State(slots=4, prefetch=2, held=1, busy=1, stopping=True), 0),
], ids=["idle", "idle-with-prefetch", "one-to-hold-ahead", "full", "results-and-poll-share", "stopping",
        "stopping-busy"])
def test_a_worker_wants_its_free_slots_and_unused_prefetch_until_it_stops(state, expected):
    assert wanted(state) == expected


@pytest.mark.parametrize(("state", "expected"), [
    (State(slots=4, prefetch=0), Ask(4, WAIT)),
    (State(slots=4, prefetch=2), Ask(6, WAIT)),
    (State(slots=4, prefetch=0, held=3, busy=3), Ask(1, WAIT)),
    (State(slots=4, prefetch=2, held=3, busy=3), Ask(3, WAIT)),  # one slot empty: asks for the prefetch too
    (State(slots=4, prefetch=0, polling=4), None),  # one in flight already
    (State(slots=4, prefetch=0, held=2, busy=2, polling=2), None),
    (State(slots=4, prefetch=0, held=3, busy=3, results=1, first_result_at=0.0), None),  # the result asks
    (State(slots=1, prefetch=1, held=1, busy=1), None),  # every slot has a fruit: the prefetch comes with results
    (State(slots=4, prefetch=2, held=4, busy=4), None),
    (State(slots=4, prefetch=2, held=5, busy=4), None),
    (State(slots=4, prefetch=0, held=4, busy=4), None),
    (State(slots=4, prefetch=0, stopping=True), None),
], ids=["idle", "idle-with-prefetch", "one-slot-free", "one-slot-free-with-prefetch", "in-flight",
        "in-flight-busy", "result-waiting", "all-slots-have-fruit", "prefetch-not-alone", "holding-ahead",
        "full", "stopping"])
def test_a_long_poll_asks_for_everything_when_no_request_asks_for_an_empty_slot(state, expected):
    assert long_poll(state, WAIT) == expected


@pytest.mark.parametrize(("state", "expected"), [
    (State(slots=4, prefetch=0, held=2, busy=2, results=2, first_result_at=0.0), Ask(2, 0)),
    (State(slots=4, prefetch=2, held=2, busy=2, results=2, first_result_at=0.0), Ask(4, 0)),
    (State(slots=8, prefetch=0, results=1, first_result_at=0.0, polling=7), Ask(1, 0)),  # the poll asks the rest
    (State(slots=4, prefetch=0, held=4, busy=4, results=1, first_result_at=0.0, polling=0), Ask(0, 0)),
    (State(slots=4, prefetch=0, results=2, first_result_at=0.0, stopping=True), Ask(0, 0)),
    (State(slots=4, prefetch=0, results=1, first_result_at=0.0, polling=5, stopping=True), Ask(0, 0)),
], ids=["its-slots", "its-slots-and-prefetch", "beside-a-long-poll", "nothing-free", "stopping",
        "stopping-while-polling"])
def test_results_ask_at_once_for_what_no_long_poll_asks_for(state, expected):
    assert with_results(state) == expected


@pytest.mark.parametrize(("state", "now", "expected"), [
    (State(slots=2, prefetch=0), 5.0, None),
    (State(slots=2, prefetch=2, held=3, busy=2), 5.0, None),
    (State(slots=2, prefetch=0, held=1, busy=1, results=1, first_result_at=5.0), 5.0, 0.0),
    (State(slots=2, prefetch=0, held=2, busy=1, results=1, first_result_at=5.0), 5.0, 0.0),  # no prefetch: none
    (State(slots=2, prefetch=2, held=2, busy=2, results=1, first_result_at=5.0), 5.0, 0.0),  # all in a slot
    (State(slots=2, prefetch=2, results=1, first_result_at=5.0), 5.0, 0.0),
    (State(slots=2, prefetch=2, held=3, busy=2, results=1, first_result_at=5.0), 5.0, MAX_RESULT_HOLD),
    (State(slots=2, prefetch=2, held=3, busy=2, results=2, first_result_at=5.0), 5.25, MAX_RESULT_HOLD - 0.25),
    (State(slots=2, prefetch=2, held=3, busy=2, results=2, first_result_at=5.0), 5.0 + MAX_RESULT_HOLD, 0.0),
    (State(slots=2, prefetch=2, held=3, busy=2, results=2, first_result_at=5.0), 9.0, 0.0),
], ids=["nothing-to-send", "nothing-to-send-prefetching", "no-prefetch", "no-prefetch-one-starting",
        "every-task-in-a-slot", "nothing-held", "prefetched-waiting", "held-a-while", "held-long-enough",
        "held-past-the-limit"])
def test_results_wait_only_while_prefetched_tasks_wait_for_a_slot_and_not_for_long(state, now, expected):
    held = result_hold(state, now)
    assert (held is None) if expected is None else (held == pytest.approx(expected))
