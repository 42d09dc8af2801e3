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
