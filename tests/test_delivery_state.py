"""Checkpoints track exactly what was delivered, item by item and page by page."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("taken", [0, 1, 7, 8, 9, 99, 100, 101, 250, 299, 300])
async def test_checkpoint_after_each_item(serve: Any, taken: int) -> None:
    """After n items the checkpoint names the n-th item, its position and up to 7 before it."""
    async with serve(functions={"sieve/a": 300}) as (fake, sieve):
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a", page_size=100)
        for _ in range(taken):
            await anext(paginator)
        checkpoint = paginator.checkpoint
        assert checkpoint["offset"] == taken
        assert checkpoint["last_id"] == (ids[taken - 1] if taken else None)
        assert checkpoint["recent"] == ids[max(0, taken - 8) : max(0, taken - 1)]
        rest = await sieve.list_function_jobs("sieve", "a", resume=checkpoint).collect()
        assert [job.id for job in rest] == ids[taken:]
        await paginator.aclose()


async def test_items_then_pages_then_items(serve: Any) -> None:
    """Mixing item and page iteration delivers each job once, in order, with a true checkpoint."""
    async with serve(functions={"sieve/a": 450}) as (fake, sieve):
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a", page_size=100)
        seen = [(await anext(paginator)).id for _ in range(30)]
        page = await anext(paginator.pages())
        seen += [job.id for job in page.items]
        assert len(seen) == 100
        assert paginator.checkpoint["last_id"] == ids[99]
        seen += [(await anext(paginator)).id for _ in range(5)]
        seen += [job.id async for job in paginator]
        assert seen == ids
        assert paginator.checkpoint["offset"] == 450


@pytest.mark.parametrize("failing", [4, 11])
async def test_item_that_fails_to_structure_stays_undelivered(serve: Any, failing: int) -> None:
    """A delivery that raises leaves the checkpoint before that item, mid-page or a page's first."""
    async with serve(functions={"sieve/a": 20}) as (fake, sieve):
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a", page_size=10)
        calls = 0
        structure = paginator._structure

        def flaky(item: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == failing:
                raise RuntimeError("boom")
            return structure(item)

        paginator._structure = flaky
        for _ in range(failing - 1):
            await anext(paginator)
        with pytest.raises(RuntimeError, match=r"^boom$"):
            await anext(paginator)
        assert paginator.checkpoint["last_id"] == ids[failing - 2]
        assert (await anext(paginator)).id == ids[failing - 1]
