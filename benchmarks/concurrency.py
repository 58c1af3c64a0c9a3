"""Fan-out over many functions and read-ahead within one listing, against a server with latency.

Both are measured as wall time over an ideal: fan-out against ``requests x latency /
concurrency``, read-ahead as the speedup over ``read_ahead=0`` on the same listing.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from sieve_async import SieveClient

from ._server import API_KEY, serve
from ._stats import interleaved, median, median_ratio

LATENCY = 0.02
PAGE_SIZE = 100
#: The fan-out again with pages this small, ours and bare aiohttp's, at concurrency 8: what is
#: left over the ideal then is the cost of a request, not of the jobs it carries.
SMALL_PAGE_SIZE = 20


def jobs_for_pages(pages: int, page_size: int = PAGE_SIZE) -> int:
    """How many jobs a listing needs to take exactly ``pages`` requests of ``page_size``.

    After the first, each window overlaps the previous page by one item, so it brings
    ``page_size - 1`` new jobs.
    """
    return page_size + (pages - 1) * (page_size - 1)


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


async def _plain_fan_out(
    url: str, refs: list[str], concurrency: int, page_size: int = PAGE_SIZE
) -> tuple[int, int]:
    """The same fan-out in bare aiohttp, for reference: as many listings as request slots."""
    count = requests = 0
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as session:

        async def listing(ref: str) -> None:
            nonlocal count, requests
            offset = 0
            async with slots:
                while True:
                    params = {"limit": page_size, "offset": offset}
                    async with session.get(f"{url}/v2/functions/{ref}/jobs", params=params) as r:
                        r.raise_for_status()
                        document = orjson.loads(await r.read())
                    requests += 1
                    for job in document["data"]:
                        _ = job["id"]
                        count += 1
                    if document["next_offset"] == -1:
                        return
                    offset = document["next_offset"]

        await asyncio.gather(*(listing(ref) for ref in refs))
    return count, requests


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


async def run(
    *,
    functions: int,
    pages: int,
    concurrencies: list[int],
    long_pages: int,
    read_aheads: list[int],
    rounds: int,
) -> dict[str, dict[int, float]]:
    """Fan-out wall/ideal per concurrency and read-ahead speedup per k, medians of ``rounds``."""
    refs = [f"bench/fn{i:02d}" for i in range(functions)]
    small_refs = [f"bench/small{i:02d}" for i in range(functions)]
    listings = {ref: jobs_for_pages(pages) for ref in refs}
    listings.update({ref: jobs_for_pages(pages, SMALL_PAGE_SIZE) for ref in small_refs})
    listings["bench/long"] = jobs_for_pages(long_pages)
    expected_fan_out = functions * jobs_for_pages(pages)
    expected_small = functions * jobs_for_pages(pages, SMALL_PAGE_SIZE)
    requests: dict[str, int] = {}
    # The bare-aiohttp reference runs at the concurrency the target names, where measured.
    plain_concurrency = 8 if 8 in concurrencies else max(concurrencies)

    def checked(name: str, expected: int, outcome: tuple[int, int]) -> None:
        count, sent = outcome
        if count != expected:
            raise RuntimeError(f"{name} read {count} of {expected} jobs")
        requests[name] = sent

    with serve(listings, latency=LATENCY) as url:

        def fan_out(concurrency: int) -> object:
            async def go() -> None:
                outcome = await _fan_out(url, refs, concurrency)
                checked(f"fan-out {concurrency}", expected_fan_out, outcome)

            return go

        def ahead(k: int) -> object:
            async def go() -> None:
                checked(f"read-ahead {k}", listings["bench/long"], await _read_ahead(url, k))

            return go

        async def plain_fan_out() -> None:
            outcome = await _plain_fan_out(url, refs, plain_concurrency)
            checked("plain fan-out", expected_fan_out, outcome)

        async def small_pages() -> None:
            outcome = await _fan_out(url, small_refs, plain_concurrency, SMALL_PAGE_SIZE)
            checked("small pages", expected_small, outcome)

        async def plain_small_pages() -> None:
            outcome = await _plain_fan_out(url, small_refs, plain_concurrency, SMALL_PAGE_SIZE)
            checked("plain small pages", expected_small, outcome)

        runners = {f"fan-out {c}": fan_out(c) for c in concurrencies}
        runners["plain fan-out"] = plain_fan_out
        runners["small pages"] = small_pages
        runners["plain small pages"] = plain_small_pages
        runners.update({f"read-ahead {k}": ahead(k) for k in read_aheads})
        times = await interleaved(runners, rounds)  # type: ignore[arg-type]

    fan_out_ratio = {}
    for c in concurrencies:
        ideal = requests[f"fan-out {c}"] * LATENCY / c
        fan_out_ratio[c] = median(times[f"fan-out {c}"]) / ideal
    plain_ideal = requests["plain fan-out"] * LATENCY / plain_concurrency

    def small(name: str) -> float:
        return median(times[name]) / (requests[name] * LATENCY / plain_concurrency)

    base = times[f"read-ahead {read_aheads[0]}"]
    speedup = {k: median_ratio(base, times[f"read-ahead {k}"]) for k in read_aheads}
    return {
        "fan_out_wall_over_ideal": fan_out_ratio,
        "plain_fan_out_wall_over_ideal": {
            plain_concurrency: median(times["plain fan-out"]) / plain_ideal
        },
        "small_page_fan_out_wall_over_ideal": {
            plain_concurrency: small("small pages"),
        },
        "plain_small_page_fan_out_wall_over_ideal": {
            plain_concurrency: small("plain small pages"),
        },
        "read_ahead_speedup": speedup,
        "fan_out_requests": {c: float(requests[f"fan-out {c}"]) for c in concurrencies},
        "read_ahead_requests": {k: float(requests[f"read-ahead {k}"]) for k in read_aheads},
    }
