"""The fan-out hands jobs over without a checkpoint per job, whatever the buffer size."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("buffer_size", [1, 7, 1000])
async def test_every_job_once_tagged_with_its_function(serve: Any, buffer_size: int) -> None:
    """Jobs of every function arrive exactly once, each with the function it came from."""
    functions = {f"sieve/fn{i}": 37 * i for i in range(6)}
    async with serve(functions=functions, page_cap=25) as (fake, sieve):
        got: dict[str, list[str]] = {name: [] for name in functions}
        async with sieve.list_jobs_for_functions(
            list(functions), concurrency=3, buffer_size=buffer_size
        ) as jobs:
            async for ref, job in jobs:
                got[str(ref)].append(job.id)
        for name in functions:
            assert got[name] == [job["id"] for job in fake.jobs(name)]
