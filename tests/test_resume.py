"""Resuming, closing and limits of listings, over HTTP against FakeSieve."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

SHAPES = ["envelope", "bare"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gone", [[49], [49, 48, 44], [0, 49], [49, 50], [42, 43, 49]])
async def test_resume_after_the_last_delivered_job_left_the_listing(
    serve: Any, shape: str, gone: list[int]
) -> None:
    """The checkpoint's last job (and others) left before resuming: the rest comes exactly once."""
    async with serve(functions={"sieve/a": 300}, page_cap=20, shape=shape) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a")
        delivered: list[str] = []
        async with paginator:
            async for job in paginator:
                delivered.append(job.id)
                if len(delivered) == 50:
                    break
        checkpoint = paginator.checkpoint
        assert checkpoint["last_id"] == original[49]
        for index in sorted(gone, reverse=True):
            fake.remove_job("sieve/a", index)
        resumed = sieve.list_function_jobs("sieve", "a", resume=checkpoint)
        rest = [job.id async for job in resumed]
        removed = set(fake.removed)
        assert rest == [i for i in original[50:] if i not in removed], "the undelivered, once"


async def test_resumed_fan_out_keeps_the_checkpoint_of_a_listing_it_never_reached(
    serve: Any,
) -> None:
    """Interrupted twice, the second time before one listing was reached: all jobs once."""
    x, a, b = "sieve/x", "sieve/a", "sieve/b"
    async with serve(functions={x: 100, a: 400, b: 400}, page_cap=20) as (fake, sieve):
        expected = Counter((name, job["id"]) for name in (x, a, b) for job in fake.jobs(name))
        seen: list[tuple[str, str]] = []

        # First run: stop in the middle of x.
        async with sieve.list_jobs_for_functions([x, a, b], concurrency=1) as jobs:
            async for ref, job in jobs:
                seen.append((str(ref), job.id))
                if sum(name == x for name, _ in seen) == 30:
                    break
            first = jobs.checkpoints
        assert first[x] != "done"
        assert first[x]["offset"] == 30

        # Second run: x comes last, and with one request slot (two open listings) it is never
        # opened while a and b still have hundreds of jobs to hand out.
        sent = len(fake.listing_requests())
        async with sieve.list_jobs_for_functions([a, b, x], concurrency=1, resume=first) as jobs:
            async for ref, job in jobs:
                seen.append((str(ref), job.id))
                if len(seen) == 60:
                    break
            second = jobs.checkpoints
        assert not any("/sieve/x/" in r.path for r in fake.listing_requests()[sent:])
        assert second[x] == first[x]

        # Third run: everything that is left.
        async for ref, job in sieve.list_jobs_for_functions([x, a, b], resume=second):
            seen.append((str(ref), job.id))
        assert Counter(seen) == expected, "every job exactly once over three runs"


@pytest.mark.parametrize("read_ahead", [0, 2])
async def test_paginator_closed_yields_nothing_more(serve: Any, read_ahead: int) -> None:
    """After aclose(), iterating again (items, pages, collect()) raises, since a paginator is
    one-shot, and sends nothing; the checkpoint stays usable."""
    async with serve(functions={"sieve/a": 200}, page_cap=20) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a", read_ahead=read_ahead)
        taken: list[str] = []
        async for job in paginator:
            taken.append(job.id)
            if len(taken) == 25:
                break
        await paginator.aclose()
        checkpoint = paginator.checkpoint
        sent = len(fake.requests)
        with pytest.raises(RuntimeError, match="already iterated"):
            [job async for job in paginator]
        with pytest.raises(RuntimeError, match="already iterated"):
            paginator.pages()
        with pytest.raises(RuntimeError, match="already iterated"):
            await paginator.collect()
        if not read_ahead:
            # With read-ahead, a request cancelled by aclose() may still reach the server late.
            assert len(fake.requests) == sent
        assert paginator.checkpoint == checkpoint
        await paginator.aclose()
        rest = await sieve.list_function_jobs("sieve", "a", resume=checkpoint).collect()
        assert taken + [job.id for job in rest] == original


@pytest.mark.parametrize(
    ("page_size", "max_items", "read_ahead"),
    [(10, 25, 0), (10, 25, 3), (10, 5, 0), (10, 5, 3), (7, 100, 2), (10, 30, 0), (10, 11, 4)],
)
async def test_max_items_never_asks_for_more_than_a_page_and_its_overlap(
    serve: Any, page_size: int, max_items: int, read_ahead: int
) -> None:
    """With max_items, each request's limit stays within page_size (and the overlap item) and
    what is still wanted."""
    async with serve(functions={"sieve/a": 300}) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs(
            "sieve", "a", page_size=page_size, max_items=max_items, read_ahead=read_ahead
        )
        async with paginator:
            jobs = await paginator.collect()
        assert [job.id for job in jobs] == original[:max_items]
        requests = fake.listing_requests()
        assert requests
        for request in requests:
            # The overlap of one item may come on top of a page and of what is still wanted.
            limit = int(request.query["limit"])
            assert limit <= min(page_size + 1, max_items + 1), request.query


@pytest.mark.parametrize("value", [[1], "abc", 3, ("offset", 3)])
async def test_resume_that_is_not_a_dict_names_what_it_got(serve: Any, value: Any) -> None:
    """resume= given something other than a checkpoint dict: ValueError quoting it, no request."""
    async with serve(functions={"sieve/a": 10}) as (fake, sieve):
        with pytest.raises(
            ValueError, match=re.escape(f"takes a paginator's .checkpoint, got {value!r}")
        ):
            sieve.list_function_jobs("sieve", "a", resume=value)
        assert fake.requests == []
