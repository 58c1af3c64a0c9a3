"""Servers written to break the paging promise, read through the public API over HTTP.

Each ends the listing complete and exactly once, or with an error of ours saying what the
server did: never a silent short listing, never a loop, never a job twice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from servers import app_server

from sieve_async import SieveClient, SieveDecodeError, SievePaginationError
from sieve_async.testing import FakeSieve

pytestmark = pytest.mark.anyio

#: ``respond(offset, limit, request_number) -> (items, next_offset or None for a bare array)``
Respond = Callable[[int, int, int], tuple[list[Any], int | None]]


@asynccontextmanager
async def hostile(respond: Respond) -> AsyncIterator[tuple[SieveClient, list[int]]]:
    """A job listing served by ``respond``; yields a client and the list of offsets asked."""
    asked: list[int] = []

    async def jobs(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "100"))
        asked.append(offset)
        items, next_offset = respond(offset, limit, len(asked) - 1)
        body: Any = items if next_offset is None else {"data": items, "next_offset": next_offset}
        return web.Response(body=json.dumps(body), content_type="application/json")

    async with (
        app_server({"/v2/functions/{owner}/{name}/jobs": jobs}) as url,
        SieveClient(api_key="k", base_url=url) as sieve,
    ):
        yield sieve, asked


def jobs_of(ids: list[Any]) -> list[dict[str, Any]]:
    return [{"id": i, "status": "finished"} for i in ids]


async def read(sieve: SieveClient, **options: Any) -> list[Any]:
    jobs = await sieve.list_function_jobs("o", "f", **options).collect()
    return [job.raw["id"] for job in jobs]


async def test_capped_pages_after_a_job_left_deliver_every_job_that_stayed() -> None:
    """50 jobs, pages of 20; a read one leaves after page 1 and later pages are capped at 10:
    every job once (20 were delivered and lost before)."""
    listing = [f"j{i}" for i in range(50)]

    def respond(offset: int, limit: int, n: int) -> tuple[list[Any], int | None]:
        if n == 1:
            listing.remove("j5")
        cap = limit if n == 0 else min(limit, 10)
        page = listing[offset : offset + cap]
        end = offset + len(page) >= len(listing)
        return jobs_of(page), -1 if end else offset + len(page)

    async with hostile(respond) as (sieve, _):
        assert await read(sieve, page_size=20) == [f"j{i}" for i in range(50)]


@pytest.mark.parametrize("seed", range(20))
async def test_varying_cap_with_jobs_leaving_loses_nothing(seed: int) -> None:
    """A cap between 10 and 20 per request and 0-1 jobs leaving per request: nothing lost."""
    import random

    rng = random.Random(seed)
    listing = [f"j{i}" for i in range(391)]
    removed: set[str] = set()

    def respond(offset: int, limit: int, n: int) -> tuple[list[Any], int | None]:
        page = listing[offset : offset + min(limit, rng.randint(10, 20))]
        end = offset + len(page) >= len(listing)
        if rng.random() < 0.5 and listing:
            removed.add(listing.pop(rng.randrange(len(listing))))
        return jobs_of(page), -1 if end else offset + len(page)

    async with hostile(respond) as (sieve, _):
        delivered = await read(sieve, page_size=20)
    assert len(delivered) == len(set(delivered))
    assert {f"j{i}" for i in range(391)} - removed <= set(delivered)


async def test_next_offset_that_never_advances_is_an_error() -> None:
    """next_offset 10 on every page of a 100-job listing: an error, not 19 jobs and a clean end."""
    listing = [f"j{i}" for i in range(100)]
    async with hostile(lambda o, lim, n: (jobs_of(listing[o : o + lim]), 10)) as (sieve, _):
        with pytest.raises(SievePaginationError, match="next_offset 10"):
            await read(sieve, page_size=20)


@pytest.mark.parametrize("bad", [-5, -2, -1000])
async def test_negative_next_offset_other_than_minus_one_is_an_error(bad: int) -> None:
    """Only -1 marks the end: any other negative next_offset says nothing, so it is an error."""
    async with hostile(lambda o, lim, n: (jobs_of([f"j{o}"]), bad)) as (sieve, _):
        with pytest.raises(SievePaginationError, match=f"next_offset {bad}"):
            await read(sieve, page_size=20)


async def test_same_page_forever_is_an_error_after_a_few_requests() -> None:
    """The same ten jobs at every offset, next_offset advancing: an error within 20 requests."""
    page = jobs_of([f"a{i}" for i in range(10)])
    async with hostile(lambda o, lim, n: (page, o + 10)) as (sieve, asked):
        with pytest.raises(SievePaginationError, match="brought no new item"):
            await read(sieve, page_size=10)
    assert len(asked) < 20


@pytest.mark.parametrize("envelope", [True, False])
async def test_rotated_page_forever_is_an_error_not_a_loop(envelope: bool) -> None:
    """[A9, A0..A8] at every offset: an error within 20 requests, not thousands a second."""
    page = jobs_of(["A9", *(f"A{i}" for i in range(9))])
    async with hostile(lambda o, lim, n: (page, o + 10 if envelope else None)) as (sieve, asked):
        with pytest.raises(SievePaginationError):
            await read(sieve, page_size=10)
    assert len(asked) < 20


async def test_an_id_twice_in_one_page_is_delivered_once() -> None:
    """A page [a, b, a, c] delivers a, b, c: the first copy counts."""
    async with hostile(lambda o, lim, n: (jobs_of(["a", "b", "a", "c"][o:]), -1)) as (sieve, _):
        assert await read(sieve) == ["a", "b", "c"]


async def test_ids_compare_by_json_type() -> None:
    """1 and "1" are two jobs; a boolean id is refused rather than taken as 1."""
    async with hostile(lambda o, lim, n: (jobs_of([1, "1"][o:]), -1)) as (sieve, _):
        assert await read(sieve) == [1, "1"]
    async with hostile(lambda o, lim, n: (jobs_of([1, True][o:]), -1)) as (sieve, _):
        with pytest.raises(SieveDecodeError, match="'id' is true"):
            await read(sieve)


async def test_jobs_landing_faster_than_pages_are_read_is_an_error() -> None:
    """Ten jobs land at the head per request of ten: an error, not a clean end at offset 77."""
    listing = [f"j{i}" for i in range(100)]
    fresh = iter(range(10**6))

    def respond(offset: int, limit: int, n: int) -> tuple[list[Any], int | None]:
        page = listing[offset : offset + limit]
        end = offset + len(page) >= len(listing)
        listing[:0] = [f"new{next(fresh)}" for _ in range(10)]
        return jobs_of(page), -1 if end else offset + len(page)

    async with hostile(respond) as (sieve, _):
        with pytest.raises(SievePaginationError, match="faster than pages are read"):
            await read(sieve, page_size=10)


async def test_bare_array_server_ignoring_offset_is_an_error() -> None:
    """A bare array that always answers the first page: an error, not one page and a clean end."""
    listing = jobs_of([f"j{i}" for i in range(100)])
    async with hostile(lambda o, lim, n: (listing[:lim], None)) as (sieve, asked):
        with pytest.raises(SievePaginationError):
            await read(sieve, page_size=20)
    assert len(asked) < 20


async def test_lone_surrogate_in_a_job_is_read_not_retried() -> None:
    """Valid JSON orjson refuses (a lone surrogate escape) is read by the standard library."""
    listing = [{"id": "a", "error": "\ud800"}, {"id": "b"}]
    async with hostile(lambda o, lim, n: (listing[o:], -1)) as (sieve, _):
        jobs_read = await sieve.list_function_jobs("o", "f").collect()
        assert [job.id for job in jobs_read] == ["a", "b"]
        assert jobs_read[0].raw["error"] == "\ud800"
        assert sieve.stats.retries == 0


WIDE = {"big": 2**64, "low": -(2**63) - 1, "nested": [10**30, {"x": -(10**25)}], "edge": 2**64 - 1}


@pytest.mark.parametrize("shape", ["envelope", "bare"])
async def test_integers_beyond_64_bits_keep_every_digit_in_raw(shape: str) -> None:
    """orjson reads an integer beyond 64 bits as a float; such a page is read by the standard
    library instead, so raw holds the exact integers (floats, with digits lost, before)."""
    listing = [{"id": "a", **WIDE}, {"id": "b", "small": 1, "f": 1.5}]
    end = -1 if shape == "envelope" else None
    async with hostile(lambda o, lim, n: (listing[o:], end)) as (sieve, _):
        jobs_read = await sieve.list_function_jobs("o", "f").collect()
    assert [job.raw for job in jobs_read] == listing
    assert type(jobs_read[0].raw["big"]) is int
    assert type(jobs_read[0].raw["nested"][1]["x"]) is int
    assert jobs_read[1].raw["f"] == 1.5


async def test_read_ahead_against_a_capped_server_sends_few_extra_requests() -> None:
    """read_ahead=4 against a server capping pages at 10 (page_size 100) learns the cap: at
    most 10% more requests than read_ahead=0 (it sent five times as many before)."""
    counts = {}
    for read_ahead in (0, 4):
        async with FakeSieve(functions={"o/f": 500}, page_cap=10) as fake:
            async with SieveClient(api_key=fake.api_key, base_url=fake.url) as sieve:
                jobs = sieve.list_function_jobs("o", "f", page_size=100, read_ahead=read_ahead)
                assert len(await jobs.collect()) == 500
            counts[read_ahead] = len(fake.listing_requests())
    assert counts[4] <= 1.1 * counts[0], counts
