"""The order in which one order's fruits are handed out, so that its salad is ready soonest.

A salad is ready when its last fruit is, and Master knows every fruit's time when it splits the order.
Longest first is the classic rule, but a worker that holds fruits ahead (`SALAD_PREFETCH`) takes its next
fruit when it starts one, not when it is free: at the end of a salad one worker can still hold a fruit
while another sits idle. So for a small order Master plays the live workers' claims through for a
candidate order and swaps pairs of fruits while that makes the salad finish sooner (the makespan
benchmark compares both with the lower bound).
The plan takes the workers as free when the order is split, as they are for a client ordering one salad
at a time; behind other orders' fruits it is an informed guess, as longest first is.
"""

import heapq
from collections import deque
from typing import NamedTuple

MAX_PLANNED_FRUITS = 16  # larger orders go longest first: nearly as good there, and the search grows as n^3
MAX_PASSES = 8  # rounds of swaps tried; seed-style salads settle within three or four


class Capacity(NamedTuple):
    """What a live worker takes: fruits prepared at once, and fruits held ahead of its free slots."""

    slots: int
    prefetch: int


def longest_first(times: list[int]) -> list[int]:
    """Positions, longest fruit first; equal ones in their order's order."""
    return sorted(range(len(times)), key=lambda i: (-times[i], i))


def makespan(times: list[int], order: list[int], workers: list[Capacity]) -> int:
    """When the last fruit ends if `workers` claim the fruits in `order` (positions), each taking slots +
    prefetch at the start and one more as each fruit ends (round trips left out: they shift every worker
    alike)."""
    queue = deque(order)
    held: list[deque] = [deque() for _ in workers]
    running = [0] * len(workers)
    ends: list[tuple[int, int]] = []  # (time a fruit ends, its worker)
    last = 0

    def start_held(w: int, now: int) -> None:
        while held[w] and running[w] < workers[w].slots:
            running[w] += 1
            heapq.heappush(ends, (now + times[held[w].popleft()], w))

    for w, capacity in enumerate(workers):
        for _ in range(min(capacity.slots + capacity.prefetch, len(queue))):
            held[w].append(queue.popleft())
        start_held(w, 0)
    while ends:
        last, w = heapq.heappop(ends)
        running[w] -= 1
        if queue:
            held[w].append(queue.popleft())  # the worker asks for one more as a fruit ends ...
        start_held(w, last)  # ... and starts the one it held ahead (first in, first out) at once
    return last


def worth_planning(times: list[int]) -> bool:
    """A small order whose fruits' times differ: with one time for all, any order ends alike."""
    return len(times) <= MAX_PLANNED_FRUITS and len(set(times)) > 1


def plan(times: list[int], workers: list[Capacity]) -> list[int]:
    """The hand-out rank of each fruit (0 first): longest first, improved by swaps for small orders."""
    order = longest_first(times)
    if workers and worth_planning(times):
        order = improved(times, order, workers)
    ranks = [0] * len(times)
    for rank, position in enumerate(order):
        ranks[position] = rank
    return ranks


def improved(times: list[int], order: list[int], workers: list[Capacity]) -> list[int]:
    """Hill-climb from `order`: keep any swap of two fruits of different times that ends the salad sooner,
    until none does or the salad ends at the lower bound (its longest fruit, or all of them spread evenly)."""
    bound = max(max(times), -(-sum(times) // sum(w.slots for w in workers)))
    best = makespan(times, order, workers)
    for _ in range(MAX_PASSES):
        if best <= bound:
            break
        better = False
        for i in range(len(order)):
            for j in range(i + 1, len(order)):
                if times[order[i]] == times[order[j]]:
                    continue
                order[i], order[j] = order[j], order[i]
                candidate = makespan(times, order, workers)
                if candidate < best:
                    best, better = candidate, True
                else:
                    order[i], order[j] = order[j], order[i]
        if not better:
            break
    return order
