"""Resilience figures: faults injected by kind, jobs delivered, duplicates and losses.

Run: ``python -m benchmarks.faults``. Each scenario reads one listing from FakeSieve and compares
what arrived with what the server holds; the figures are counts, not timings.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sieve_async import SieveClient
from sieve_async.testing import TRANSIENT_FAULTS, FakeSieve, Faults, Mutations, Shape

SHAPES: tuple[Shape, ...] = ("envelope", "bare")
SCENARIOS: list[tuple[str, dict[str, Any]]] = [
    ("20% faults, every transient kind", {"faults": Faults(rate=0.2, seed=7, slow_seconds=0.01)}),
    *[
        (f"30% faults, {kind} only", {"faults": Faults(rate=0.3, kinds=(kind,), seed=11)})
        for kind in TRANSIENT_FAULTS
    ],
    (
        "7 jobs inserted at the head after every page",
        {"mutations": Mutations(insert_every=1, insert_count=7)},
    ),
    (
        "one already-read job leaves after every page",
        {"mutations": Mutations(remove_every=1, remove="read", seed=5)},
    ),
    (
        "one random job leaves after every page",
        {"mutations": Mutations(remove_every=1, remove="random", seed=5)},
    ),
]


async def run(name: str, shape: Shape, options: dict[str, Any]) -> str:
    """One scenario as a markdown row: what was injected, and what arrived against the server."""
    async with FakeSieve(functions={"sieve/a": 3000}, page_cap=100, shape=shape, **options) as fake:
        original = [job["id"] for job in fake.jobs("sieve/a")]
        async with SieveClient(
            api_key=fake.api_key,
            base_url=fake.url,
            max_retries=8,
            retry_wait_initial=0.001,
            retry_wait_max=0.01,
        ) as sieve:
            ids = [job.id async for job in sieve.list_function_jobs("sieve", "a")]
            retries = sieve.stats.retries
        injected = Counter(r.fault for r in fake.requests if r.fault)
        expected = [i for i in original if i not in set(fake.removed)]
        duplicates = len(ids) - len(set(ids))
        lost = len(set(expected) - set(ids))
        faults = ", ".join(f"{k}:{v}" for k, v in sorted(injected.items())) or "-"
        return (
            f"| {name} | {shape} | {len(fake.requests)} | {faults} | {retries} | "
            f"{len(expected)} | {len(ids)} | {duplicates} | {lost} |"
        )


async def main() -> None:
    print(
        "| scenario | shape | requests | faults injected | retries | expected | delivered "
        "| duplicates | lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, options in SCENARIOS:
        for shape in SHAPES:
            print(await run(name, shape, options))


if __name__ == "__main__":
    asyncio.run(main())
