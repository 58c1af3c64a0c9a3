"""Paginators and fan-outs read their listings once and say so; a client belongs to one event
loop and says so."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sieve_async import SieveClient
from sieve_async.testing import FakeSieve

pytestmark = pytest.mark.anyio

ONE_SHOT = r"this paginator was already iterated; it reads its listing once\. Call the list_\*"


async def test_pages_after_collect_raises(serve: Any) -> None:
    """collect() then pages() on one paginator: RuntimeError, not an empty iteration."""
    async with serve(functions={"sieve/a": 7}) as (_, sieve):
        paginator = sieve.list_function_jobs("sieve", "a")
        assert len(await paginator.collect()) == 7
        with pytest.raises(RuntimeError, match=ONE_SHOT):
            paginator.pages()


async def test_second_iteration_of_a_finished_paginator_raises(serve: Any) -> None:
    """A second ``async for`` over a paginator read to its end raises."""
    async with serve(functions={"sieve/a": 7}) as (_, sieve):
        paginator = sieve.list_function_jobs("sieve", "a")
        assert len([job async for job in paginator]) == 7
        with pytest.raises(RuntimeError, match=ONE_SHOT):
            async for _ in paginator:
                pass
        with pytest.raises(RuntimeError, match=ONE_SHOT):
            await paginator.collect()


async def test_second_iteration_of_a_partly_read_paginator_raises(serve: Any) -> None:
    """Breaking out and iterating again raises; the checkpoint continues the listing instead."""
    async with serve(functions={"sieve/a": 7}) as (_, sieve):
        paginator = sieve.list_function_jobs("sieve", "a", page_size=3)
        first = []
        async for job in paginator:
            first.append(job.id)
            if len(first) == 4:
                break
        with pytest.raises(RuntimeError, match=ONE_SHOT):
            async for _ in paginator:
                pass
        rest = sieve.list_function_jobs("sieve", "a", page_size=3, resume=paginator.checkpoint)
        everything = [job.id for job in await sieve.list_function_jobs("sieve", "a").collect()]
        assert first + [job.id for job in await rest.collect()] == everything


async def test_second_iteration_of_a_fan_out_raises(serve: Any) -> None:
    """A fan-out is one-shot too: pages() after ``async for`` raises."""
    async with serve(functions={"sieve/a": 4, "sieve/b": 3}) as (_, sieve):
        jobs = sieve.list_jobs_for_functions(["sieve/a", "sieve/b"])
        assert len([job async for _, job in jobs]) == 7
        with pytest.raises(RuntimeError, match=r"this fan-out was already iterated"):
            jobs.pages()


def test_a_client_used_from_a_second_event_loop_names_the_cause() -> None:
    """Two asyncio.run() calls over one client: the second raises a RuntimeError naming the
    other event loop, not aiohttp's "Event loop is closed"."""
    fake = FakeSieve(functions={"sieve/a": 5})
    sieve = SieveClient(api_key=fake.api_key, base_url=fake.url, transport=fake.transport())

    async def count() -> int:
        return len(await sieve.list_function_jobs("sieve", "a").collect())

    async def count_then_close() -> int:
        try:
            return await count()
        finally:
            await sieve.aclose()

    assert asyncio.run(count()) == 5
    with pytest.raises(
        RuntimeError,
        match=r"first used in another event loop \(now closed\).*one client per asyncio\.run",
    ):
        asyncio.run(count_then_close())
