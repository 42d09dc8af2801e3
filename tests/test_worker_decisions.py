"""The worker's decisions (worker/decisions.py), each on a table of states: no stack, no clock."""

import pytest
from salad.worker.decisions import (
    MASTER_SILENCE_SECONDS,
    MAX_RESULT_HOLD,
    RESULT_LINGER,
    Ask,
    Drain,
    State,
    drain,
    hand_back_at_once,
    linger,
    long_poll,
    preparation,
    ready,
    result_hold,
    wanted,
    with_results,
)

WAIT = 10.0  # a long-poll's wait (SALAD_CLAIM_WAIT)


@pytest.mark.parametrize(("state", "expected"), [
    (State(slots=4, prefetch=0), 4),
    (State(slots=4, prefetch=2), 6),
    (State(slots=4, prefetch=2, held=5, busy=4), 1),
    (State(slots=4, prefetch=2, held=6, busy=4), 0),
    (State(slots=4, prefetch=0, held=1, busy=1, results=3, polling=2), 3),  # asked for already or not
    (State(slots=4, prefetch=2, stopping=True), 0),
    (State(slots=4, prefetch=2, held=1, busy=1, stopping=True), 0),
], ids=["idle", "idle-with-prefetch", "one-to-hold-ahead", "full", "asked-for-or-not", "stopping",
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
    (State(slots=1, prefetch=1, held=1, busy=1), None),  # the slot has a fruit: results ask for more
    (State(slots=4, prefetch=2, held=4, busy=4), None),
    (State(slots=4, prefetch=2, held=5, busy=4), None),
    (State(slots=4, prefetch=0, held=4, busy=4), None),
    (State(slots=4, prefetch=0, stopping=True), None),
], ids=["idle", "idle-with-prefetch", "one-slot-free", "one-slot-free-with-prefetch", "in-flight",
        "in-flight-busy", "result-waiting", "all-slots-have-fruit", "only-prefetch-free", "holding-ahead",
        "full", "stopping"])
def test_a_long_poll_asks_for_everything_when_no_request_asks_for_an_empty_slot(state, expected):
    assert long_poll(state, WAIT) == expected


@pytest.mark.parametrize(("state", "expected"), [
    (State(slots=4, prefetch=0, held=2, busy=2, results=2, first_result_at=0.0), Ask(2, 0)),
    (State(slots=4, prefetch=2, held=2, busy=2, results=2, first_result_at=0.0), Ask(4, 0)),
    (State(slots=8, prefetch=0, results=1, first_result_at=0.0, polling=7), Ask(1, 0)),  # the poll: the rest
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
    (State(slots=2, prefetch=0, held=2, busy=1, results=1, first_result_at=5.0), 5.0, 0.0),  # one starting
    (State(slots=2, prefetch=2, held=2, busy=2, results=1, first_result_at=5.0), 5.0, 0.0),  # all in a slot
    (State(slots=2, prefetch=2, results=1, first_result_at=5.0), 5.0, 0.0),
    (State(slots=2, prefetch=2, held=3, busy=2, results=1, first_result_at=5.0), 5.0, MAX_RESULT_HOLD),
    (State(slots=2, prefetch=2, held=3, busy=2, results=2, first_result_at=5.0), 5.25, MAX_RESULT_HOLD - .25),
    (State(slots=2, prefetch=2, held=3, busy=2, results=2, first_result_at=5.0), 5.0 + MAX_RESULT_HOLD, 0.0),
    (State(slots=2, prefetch=2, held=3, busy=2, results=2, first_result_at=5.0), 9.0, 0.0),
], ids=["nothing-to-send", "nothing-to-send-prefetching", "no-prefetch", "no-prefetch-one-starting",
        "every-task-in-a-slot", "nothing-held", "prefetched-waiting", "held-a-while", "held-long-enough",
        "held-past-the-limit"])
def test_results_wait_only_while_prefetched_tasks_wait_for_a_slot_and_not_for_long(state, now, expected):
    held = result_hold(state, now)
    assert (held is None) if expected is None else (held == pytest.approx(expected))


@pytest.mark.parametrize(("first_result_at", "oldest_in_slot", "now", "expected"), [
    (10.0, None, 10.0, 0.0),  # every slot free
    (10.0, 10.5, 10.5, 0.0),  # only a fruit that took its slot after the result came: nothing to wait for
    (10.0, 9.0, 10.0, RESULT_LINGER),
    (10.0, 10.0, 10.0, RESULT_LINGER),  # took its slot as the result came
    (10.0, 9.0, 10.0 + RESULT_LINGER / 2, RESULT_LINGER / 2),
    (10.0, 9.0, 10.0 + RESULT_LINGER, 0.0),
    (10.0, 9.0, 11.0, 0.0),
], ids=["slots-free", "only-a-newer-fruit", "fruit-being-prepared", "fruit-started-with-it", "half-lingered",
        "lingered-enough", "late"])
def test_a_batch_lingers_briefly_only_for_fruits_already_being_prepared(first_result_at, oldest_in_slot, now,
                                                                        expected):
    began = first_result_at
    assert linger(first_result_at, oldest_in_slot, began, now) == pytest.approx(expected)


@pytest.mark.parametrize(("stopping", "in_slot", "expected"), [
    (False, False, False),
    (False, True, False),
    (True, False, True),  # prefetched, or leased by a request sent just before the stop
    (True, True, False),  # may finish within the grace period
])
def test_a_stopping_worker_hands_back_at_once_only_the_tasks_not_in_a_slot(stopping, in_slot, expected):
    assert hand_back_at_once(stopping, in_slot) is expected


@pytest.mark.parametrize(("state", "grace_left", "handed_back", "expected"), [
    (State(slots=2, prefetch=0, stopping=True), 10.0, False, (Drain.LEAVE, None)),
    (State(slots=2, prefetch=0, stopping=True), -1.0, True, (Drain.LEAVE, None)),
    (State(slots=2, prefetch=0, held=1, busy=1, results=1, first_result_at=0.0, stopping=True), 10.0, False,
     (Drain.REPORT, None)),
    (State(slots=2, prefetch=0, results=1, first_result_at=0.0, stopping=True), -1.0, True,
     (Drain.REPORT, None)),
    (State(slots=2, prefetch=0, held=2, busy=2, stopping=True), 10.0, False, (Drain.WAIT, 10.0)),
    (State(slots=2, prefetch=0, held=2, busy=2, stopping=True), 0.0, False, (Drain.HAND_BACK, None)),
    (State(slots=2, prefetch=0, held=2, busy=2, stopping=True), -0.5, False, (Drain.HAND_BACK, None)),
    (State(slots=2, prefetch=0, held=2, busy=2, stopping=True), -0.5, True, (Drain.WAIT, None)),
    (State(slots=2, prefetch=0, held=1, busy=1, stopping=True), 3.0, True, (Drain.WAIT, None)),
], ids=["nothing-left", "all-handed-back", "results-first", "results-after-the-grace", "fruits-finishing",
        "grace-over", "grace-long-over", "handing-back", "handing-back-early-left"])
def test_a_stopping_worker_reports_then_waits_out_its_grace_then_hands_back(state, grace_left, handed_back,
                                                                           expected):
    assert drain(state, grace_left, handed_back) == expected


@pytest.mark.parametrize(("execution_time", "time_scale", "limit", "seconds", "spend", "outcome"), [
    (10.0, 1.0, 60.0, 10.0, 10.0, "succeeded"),
    (10.0, 0.05, 60.0, 0.5, 0.5, "succeeded"),
    (10.0, 1.0, 10.0, 10.0, 10.0, "succeeded"),  # exactly at its limit
    (20.0, 1.0, 5.0, 20.0, 5.0, "timed_out"),  # stopped at its limit
    (20.0, 0.1, 1.0, 2.0, 1.0, "timed_out"),
    (0.0, 1.0, 5.0, 0.0, 0.0, "succeeded"),
])
def test_a_fruit_is_prepared_for_its_scaled_time_and_stopped_at_its_limit(execution_time, time_scale, limit,
                                                                         seconds, spend, outcome):
    planned = preparation(execution_time, time_scale, limit)
    assert (planned.seconds, planned.spend) == pytest.approx((seconds, spend)) and planned.outcome == outcome


@pytest.mark.parametrize(("stopping", "silence", "expected"), [
    (False, 0.0, True),
    (False, WAIT + MASTER_SILENCE_SECONDS - 0.1, True),
    (False, WAIT + MASTER_SILENCE_SECONDS, False),
    (False, 1000.0, False),
    (True, 0.0, False),
])
def test_a_worker_is_ready_while_master_answers_and_it_is_not_stopping(stopping, silence, expected):
    assert ready(stopping, last_contact=100.0, now=100.0 + silence, claim_wait=WAIT) is expected
