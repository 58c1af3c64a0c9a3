"""Interleaved rounds and their medians."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence


async def interleaved(
    runners: dict[str, Callable[[], Awaitable[object]]],
    rounds: int,
    *,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Wall seconds of each runner, ``rounds`` times, in a shuffled order every round.

    Interleaving spreads slow spells of a shared machine over every contender alike.
    """
    order = list(runners)
    shuffle = random.Random(seed).shuffle
    times: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            started = time.perf_counter()
            await runners[name]()
            times[name].append(time.perf_counter() - started)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median over rounds of ``numerator / denominator`` (pairs taken in the same round)."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))
