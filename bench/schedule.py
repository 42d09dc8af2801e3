"""Makespan references for one salad: the lower bound max(longest, total / workers), and the true optimum."""


def lower_bound(times: list[int], workers: int) -> float:
    return max(max(times), sum(times) / workers)


def optimum(times: list[int], workers: int) -> int:
    """The shortest makespan of `times` on `workers` identical machines (branch and bound)."""
    ordered = sorted(times, reverse=True)
    best = sum(ordered)
    loads = [0] * workers

    def place(i: int) -> None:
        nonlocal best
        if i == len(ordered):
            best = min(best, max(loads))
            return
        tried = set()
        for w in range(workers):
            if loads[w] in tried or loads[w] + ordered[i] >= best:
                continue  # identical loads are symmetric; no better than the best found
            tried.add(loads[w])
            loads[w] += ordered[i]
            place(i + 1)
            loads[w] -= ordered[i]

    place(0)
    return best
