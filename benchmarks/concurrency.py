"""Fan-out over many functions and read-ahead within one listing, against a server with latency.

The fan-out is measured against the same fan-out written in bare aiohttp (same concurrency,
same fields read, pages let go alike, same run), and both against the ideal ``requests x
latency / concurrency``; read-ahead as the speedup over ``read_ahead=0`` on the same listing;
and, at 50 ms, one listing against a bare aiohttp loop, where the CPU no longer decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

import aiohttp
import orjson

from sieve_async import SieveClient

from ._server import API_KEY, serve
from ._stats import interleaved, median, median_ratio

LATENCY = 0.02
#: The realistic-latency mode: a round trip to a distant API.
FAR_LATENCY = 0.05
PAGE_SIZE = 100
#: The fan-out again with pages this small, ours and bare aiohttp's, at concurrency 8: what is
#: left over the ideal then is the cost of a request, not of the jobs it carries.
SMALL_PAGE_SIZE = 20


def jobs_for_pages(pages: int, page_size: int = PAGE_SIZE) -> int:
    """How many jobs a listing needs to take exactly ``pages`` requests of ``page_size``: the
    overlap item is asked for on top of each page, so every request brings ``page_size`` new
    jobs, as in a plain offset loop."""
    return pages * page_size


async def _fan_out(
    url: str, refs: list[str], concurrency: int, page_size: int = PAGE_SIZE
) -> tuple[int, int]:
    async with SieveClient(api_key=API_KEY, base_url=url) as sieve:
        count = 0
        async with sieve.list_jobs_for_functions(
            refs, concurrency=concurrency, page_size=page_size
        ) as jobs:
            async for _ref, job in jobs:
                _ = job.id
                count += 1
        return count, sieve.stats.requests


async def _plain_listing(
    session: aiohttp.ClientSession, url: str, ref: str, page_size: int
) -> tuple[int, int]:
    """One listing in bare aiohttp: offset += page length until ``next_offset`` is -1; each page
    is let go before the next is asked for, as ours are."""
    count = requests = offset = 0
    while True:
        params = {"limit": page_size, "offset": offset}
        async with session.get(f"{url}/v2/functions/{ref}/jobs", params=params) as response:
            response.raise_for_status()
            document = orjson.loads(await response.read())
        requests += 1
        for job in document["data"]:
            _ = job["id"]
            count += 1
        if document["next_offset"] == -1:
            return count, requests
        offset = document["next_offset"]


async def _plain_fan_out(
    url: str, refs: list[str], concurrency: int, page_size: int = PAGE_SIZE
) -> tuple[int, int]:
    """The same fan-out in bare aiohttp, the shape a user would write: as many listings at a
    time as ``concurrency``, each read page by page."""
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as session:

        async def listing(ref: str) -> tuple[int, int]:
            async with slots:
                return await _plain_listing(session, url, ref, page_size)

        outcomes = await asyncio.gather(*(listing(ref) for ref in refs))
    return sum(c for c, _ in outcomes), sum(r for _, r in outcomes)


async def _plain_one(url: str, page_size: int = PAGE_SIZE) -> tuple[int, int]:
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as session:
        return await _plain_listing(session, url, "bench/long", page_size)


async def _read_ahead(url: str, read_ahead: int) -> tuple[int, int]:
    async with SieveClient(api_key=API_KEY, base_url=url) as sieve:
        count = 0
        async with sieve.list_function_jobs(
            "bench", "long", page_size=PAGE_SIZE, read_ahead=read_ahead
        ) as paginator:
            async for job in paginator:
                _ = job.id
                count += 1
        return count, sieve.stats.requests


Outcome = tuple[int, int]


class _Runs:
    """Named runners that check every run read all its jobs, and note the requests it sent."""

    def __init__(self) -> None:
        self.runners: dict[str, Callable[[], Awaitable[None]]] = {}
        self.requests: dict[str, int] = {}

    def add(self, name: str, expected: int, run: Callable[[], Awaitable[Outcome]]) -> None:
        async def go() -> None:
            count, sent = await run()
            if count != expected:
                raise RuntimeError(f"{name} read {count} of {expected} jobs")
            self.requests[name] = sent

        self.runners[name] = go


async def run(
    *,
    functions: int,
    pages: int,
    concurrencies: list[int],
    long_pages: int,
    read_aheads: list[int],
    rounds: int,
) -> dict[str, dict[int, float]]:
    """Fan-out against bare aiohttp at each concurrency, read-ahead speedups at 20 ms, and one
    listing at 50 ms; medians of ``rounds`` interleaved rounds."""
    refs = [f"bench/fn{i:02d}" for i in range(functions)]
    small_refs = [f"bench/small{i:02d}" for i in range(functions)]
    listings = {ref: jobs_for_pages(pages) for ref in refs}
    listings.update({ref: jobs_for_pages(pages, SMALL_PAGE_SIZE) for ref in small_refs})
    listings["bench/long"] = jobs_for_pages(long_pages)
    fan_out_jobs = functions * jobs_for_pages(pages)
    small_jobs = functions * jobs_for_pages(pages, SMALL_PAGE_SIZE)
    long_jobs = listings["bench/long"]
    # The small-page pair runs at the concurrency the targets name, where measured.
    small_concurrency = 8 if 8 in concurrencies else max(concurrencies)

    runs = _Runs()
    with serve(listings, latency=LATENCY) as url:
        for c in concurrencies:
            runs.add(f"ours {c}", fan_out_jobs, partial(_fan_out, url, refs, c))
            runs.add(f"bare {c}", fan_out_jobs, partial(_plain_fan_out, url, refs, c))
        small = partial(_fan_out, url, small_refs, small_concurrency, SMALL_PAGE_SIZE)
        plain_small = partial(_plain_fan_out, url, small_refs, small_concurrency, SMALL_PAGE_SIZE)
        runs.add("ours small", small_jobs, small)
        runs.add("bare small", small_jobs, plain_small)
        for k in read_aheads:
            runs.add(f"read-ahead {k}", long_jobs, partial(_read_ahead, url, k))
        times = await interleaved(runs.runners, rounds)
    far = _Runs()
    with serve({"bench/long": long_jobs}, latency=FAR_LATENCY) as url:
        far.add("bare", long_jobs, partial(_plain_one, url))
        far.add("ours", long_jobs, partial(_read_ahead, url, 0))
        far.add("ours ahead", long_jobs, partial(_read_ahead, url, 4))
        far_times = await interleaved(far.runners, rounds)

    requests = runs.requests

    def over_ideal(name: str, concurrency: int) -> float:
        return median(times[name]) / (requests[name] * LATENCY / concurrency)

    base = times[f"read-ahead {read_aheads[0]}"]
    return {
        "fan_out_over_bare": {
            c: median_ratio(times[f"ours {c}"], times[f"bare {c}"]) for c in concurrencies
        },
        "fan_out_wall_over_ideal": {c: over_ideal(f"ours {c}", c) for c in concurrencies},
        "plain_fan_out_wall_over_ideal": {c: over_ideal(f"bare {c}", c) for c in concurrencies},
        "fan_out_requests": {c: float(requests[f"ours {c}"]) for c in concurrencies},
        "plain_fan_out_requests": {c: float(requests[f"bare {c}"]) for c in concurrencies},
        "small_page_fan_out_over_bare": {
            small_concurrency: median_ratio(times["ours small"], times["bare small"])
        },
        "read_ahead_speedup": {
            k: median_ratio(base, times[f"read-ahead {k}"]) for k in read_aheads
        },
        "read_ahead_requests": {k: float(requests[f"read-ahead {k}"]) for k in read_aheads},
        "far_listing": {
            0: median_ratio(far_times["ours"], far_times["bare"]),
            4: median_ratio(far_times["bare"], far_times["ours ahead"]),
        },
        "far_listing_requests": {
            0: float(far.requests["ours"]),
            -1: float(far.requests["bare"]),
        },
    }
