"""Background loops stopped with their service: a step in flight finishes (within a bound) before the loop ends."""

import asyncio
import time

import pytest
from salad.core.loops import every


def stop_during_step(step_seconds: float, finish_on_stop: float) -> tuple[list[str], float]:
    """Run a loop whose step takes `step_seconds`, cancel it mid-step; returns what the step did and how long
    the loop took to end after the cancel."""
    events: list[str] = []

    async def step() -> bool:
        events.append("started")
        try:
            await asyncio.sleep(step_seconds)
        except asyncio.CancelledError:
            events.append("cut")
            raise
        events.append("finished")
        return False

    async def scenario() -> float:
        loop = asyncio.create_task(every(60, step, "test", finish_on_stop=finish_on_stop))
        while not events:
            await asyncio.sleep(0.01)
        loop.cancel()
        began = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await loop
        return time.monotonic() - began

    took = asyncio.run(scenario())
    return events, took


def test_a_stopped_loop_lets_its_step_in_flight_finish():
    events, took = stop_during_step(step_seconds=0.2, finish_on_stop=5)

    assert events == ["started", "finished"]
    assert took < 5


def test_a_step_that_outlasts_the_bound_is_cut():
    events, took = stop_during_step(step_seconds=30, finish_on_stop=0.1)

    assert events == ["started", "cut"]
    assert took < 5


def test_wakes_close_together_are_taken_by_one_step_after_the_linger():
    steps: list[float] = []

    async def step() -> bool:
        steps.append(time.monotonic())
        return False

    async def scenario() -> float:
        wake = asyncio.Event()
        loop = asyncio.create_task(every(60, step, "test", wake=wake, linger=0.2))
        while not steps:  # the first step runs at once
            await asyncio.sleep(0.01)
        woken = time.monotonic()
        for _ in range(3):  # three completions, say, 20 ms apart
            wake.set()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        return woken

    woken = asyncio.run(scenario())
    assert len(steps) == 2, "one step for the three wakes"
    assert steps[1] - woken >= 0.2, "after the linger"
