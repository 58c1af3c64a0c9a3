"""One listing, three ways: sieve_async typed jobs, a plain aiohttp dict loop, the parse floor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from sieve_async import SieveClient

from ._server import API_KEY, serve
from ._stats import interleaved, median, median_ratio

OWNER, FUNCTION = "bench", "listing"
PAGE_SIZE = 500


def _jobs_url(url: str) -> str:
    return f"{url}/v2/functions/{OWNER}/{FUNCTION}/jobs"


async def typed(url: str, read_ahead: int = 0) -> int:
    """sieve_async as a consumer uses it: ``async for``, reading two fields of every job."""
    count = 0
    async with SieveClient(api_key=API_KEY, base_url=url) as sieve:
        jobs = sieve.list_function_jobs(OWNER, FUNCTION, page_size=PAGE_SIZE, read_ahead=read_ahead)
        async for job in jobs:
            _ = job.id, job.status
            count += 1
    return count


async def typed_read_ahead(url: str) -> int:
    """As `typed`, fetching the next page while this one is read (``read_ahead=1``)."""
    return await typed(url, read_ahead=1)


async def _aiohttp_loop(
    url: str, decode: Callable[[aiohttp.ClientResponse], Awaitable[Any]], *, read: bool
) -> int:
    """Page through with aiohttp alone; ``read``: look at two fields of every job as dicts."""
    count = 0
    offset = 0
    headers = {"X-API-Key": API_KEY}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            params = {"limit": PAGE_SIZE, "offset": offset}
            async with session.get(_jobs_url(url), params=params) as response:
                response.raise_for_status()
                document = await decode(response)
            jobs = document["data"]
            if read:
                for job in jobs:
                    _ = job["id"], job["status"]
            count += len(jobs)
            if document["next_offset"] == -1 or len(jobs) < PAGE_SIZE:
                return count
            offset = document["next_offset"]


async def _orjson_body(response: aiohttp.ClientResponse) -> Any:
    return orjson.loads(await response.read())


async def plain(url: str) -> int:
    """The ten-line loop: ``await resp.json()``, dicts, stop at the end marker or a short page."""
    return await _aiohttp_loop(url, aiohttp.ClientResponse.json, read=True)


async def floor(url: str) -> int:
    """The parse-only floor: aiohttp and ``orjson.loads(await resp.read())``, nothing else."""
    return await _aiohttp_loop(url, _orjson_body, read=False)


async def run(jobs: int, rounds: int) -> dict[str, float]:
    """Jobs per second of each way and their ratios, from ``rounds`` interleaved rounds."""
    with serve({f"{OWNER}/{FUNCTION}": jobs}) as url:
        for way in (typed, typed_read_ahead, plain, floor):  # warm up: imports, caches
            got = await way(url)
            if got != jobs:
                raise RuntimeError(f"{way.__name__} read {got} of {jobs} jobs")
        times = await interleaved(
            {
                "typed": lambda: typed(url),
                "typed_read_ahead": lambda: typed_read_ahead(url),
                "plain": lambda: plain(url),
                "floor": lambda: floor(url),
            },
            rounds,
        )
    return {
        "jobs": jobs,
        "typed_jobs_per_s": jobs / median(times["typed"]),
        "typed_read_ahead_jobs_per_s": jobs / median(times["typed_read_ahead"]),
        "plain_jobs_per_s": jobs / median(times["plain"]),
        "floor_jobs_per_s": jobs / median(times["floor"]),
        # Speed ratios: a time ratio inverted.
        "typed_over_plain": median_ratio(times["plain"], times["typed"]),
        "typed_over_floor": median_ratio(times["floor"], times["typed"]),
        "typed_read_ahead_over_plain": median_ratio(times["plain"], times["typed_read_ahead"]),
        "typed_read_ahead_over_floor": median_ratio(times["floor"], times["typed_read_ahead"]),
        "plain_over_floor": median_ratio(times["floor"], times["plain"]),
    }
