"""Master's hand-out plan: longest first, improved for the live workers when that ends the salad sooner."""

from salad.master.hand_out import MAX_PLANNED_FRUITS, Capacity, longest_first, makespan, plan

HOLDING_ONE_AHEAD = [Capacity(slots=1, prefetch=1)] * 3
SEED_STYLE = [15, 10, 14, 17, 17, 14, 10, 17, 11, 10]  # a salad of the makespan benchmark (seconds)


def hand_out_order(ranks: list[int]) -> list[int]:
    return sorted(range(len(ranks)), key=lambda position: ranks[position])


def test_with_no_live_worker_known_the_longest_fruit_goes_first():
    assert hand_out_order(plan(SEED_STYLE, [])) == longest_first(SEED_STYLE) == [3, 4, 7, 0, 2, 5, 8, 1, 6, 9]


def test_a_worker_holding_a_fruit_ahead_gets_a_plan_that_ends_the_salad_sooner():
    ranks = plan(SEED_STYLE, HOLDING_ONE_AHEAD)

    assert sorted(ranks) == list(range(len(SEED_STYLE)))
    longest = makespan(SEED_STYLE, longest_first(SEED_STYLE), HOLDING_ONE_AHEAD)
    planned = makespan(SEED_STYLE, hand_out_order(ranks), HOLDING_ONE_AHEAD)
    assert (longest, planned) == (49, 45), "45: the lower bound, 135 s of fruit over 3 workers"


def test_the_simulation_follows_held_fruits():
    # Two single-slot workers holding one ahead: the first takes 5 and 1, the second 4 and 4. At 4 the second
    # starts its other 4 and takes the 3 to hold; the first is idle from 6 while the 3 waits until 8.
    assert makespan([5, 1, 4, 4, 3], [0, 1, 2, 3, 4], [Capacity(1, 1)] * 2) == 11
    # Without prefetch each fruit goes to the next worker free: 9, which the plan reaches holding one ahead.
    assert makespan([5, 1, 4, 4, 3], [0, 1, 2, 3, 4], [Capacity(1, 0)] * 2) == 9
    ranks = plan([5, 1, 4, 4, 3], [Capacity(1, 1)] * 2)
    assert makespan([5, 1, 4, 4, 3], hand_out_order(ranks), [Capacity(1, 1)] * 2) == 9
    # One worker with two slots: 5 and 4 at once, the next 4 at 4, the 3 at 5.
    assert makespan([5, 4, 4, 3], [0, 1, 2, 3], [Capacity(2, 0)]) == 8


def test_equal_fruits_and_large_orders_go_longest_first():
    assert plan([3] * 6, HOLDING_ONE_AHEAD) == list(range(6))
    large = SEED_STYLE * 2
    assert len(large) > MAX_PLANNED_FRUITS
    assert hand_out_order(plan(large, HOLDING_ONE_AHEAD)) == longest_first(large)
