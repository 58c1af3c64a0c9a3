"""Checkpoints track exactly what was delivered, item by item and page by page."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sieve_async._paginator import AsyncPaginator
from sieve_async._paging import Cursor, RawPage, Window, decode_page
from sieve_async._tasks import TaskRegistry

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
        pages = paginator.pages()
        page = await anext(pages)
        seen += [job.id for job in page.items]
        assert len(seen) == 100
        assert paginator.checkpoint["last_id"] == ids[99]
        seen += [(await anext(paginator)).id for _ in range(5)]
        seen += [job.id async for page in pages for job in page.items]
        assert seen == ids
        assert paginator.checkpoint["offset"] == 450


@pytest.mark.parametrize("failing", [4, 11])
async def test_item_that_fails_to_structure_stays_undelivered(failing: int) -> None:
    """A delivery that raises leaves the checkpoint before that item, mid-page or a page's
    first, and the item is the next one delivered."""
    ids = [f"job-{i}" for i in range(20)]

    async def fetch(window: Window) -> RawPage:
        page = ids[window.offset : window.offset + (window.limit or 20)]
        end = window.offset + len(page) >= len(ids)
        following = -1 if end else window.offset + len(page)
        body = {"data": [{"id": i} for i in page], "next_offset": following}
        return decode_page(orjson.dumps(body))

    calls = 0

    def flaky(item: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == failing:
            raise RuntimeError("boom")
        return str(item["id"])

    tasks = TaskRegistry()
    paginator: AsyncPaginator[str] = AsyncPaginator(
        listing="/jobs",
        fetch=fetch,
        structure=flaky,
        cursor=Cursor(page_size=10),
        read_ahead=0,
        tasks=tasks,
    )
    assert [await anext(paginator) for _ in range(failing - 1)] == ids[: failing - 1]
    with pytest.raises(RuntimeError, match=r"^boom$"):
        await anext(paginator)
    assert paginator.checkpoint["last_id"] == ids[failing - 2]
    assert await anext(paginator) == ids[failing - 1]
    await paginator.aclose()
    await tasks.aclose()


async def test_page_checkpoint_after_any_count_resumes_right_after_it(serve: Any) -> None:
    """page.checkpoint_after(n) resumes after the n-th item of that page; 0 before it; bad
    counts are ValueError."""
    async with serve(functions={"sieve/a": 250}) as (fake, sieve):
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        pages = sieve.list_function_jobs("sieve", "a", page_size=100).pages()
        first = await anext(pages)
        second = await anext(pages)
        start, size = len(first.items), len(second.items)
        assert [job.id for job in second.items] == ids[start : start + size]
        for count in (0, 1, 57, size):
            checkpoint = second.checkpoint_after(count)
            assert checkpoint["offset"] == start + count
            assert checkpoint["last_id"] == ids[start + count - 1]
            rest = await sieve.list_function_jobs("sieve", "a", resume=checkpoint).collect()
            assert [job.id for job in rest] == ids[start + count :]
        for bad in (-1, size + 1, True, 1.0):
            with pytest.raises(ValueError, match=f"count must be between 0 and {size}"):
                second.checkpoint_after(bad)  # type: ignore[arg-type]
    from sieve_async import Page

    with pytest.raises(ValueError, match="not made by a paginator"):
        Page(items=[], offset=0, next_offset=None).checkpoint_after(0)
