"""One listing read three ways (`_reads`), by sieve_async and by the loops a user could write.

Contenders, each reading the same fields of the same jobs from the same server in the same run:

- ``ours``: sieve_async's typed ``async for`` (and ``ours, read_ahead=1`` for the ``id``).
- ``plain``: the ten-line aiohttp loop, ``await resp.json()``, dicts.
- ``floor``: ``orjson.loads(await resp.read())``, dicts: the cheapest way to the values.
- ``plain + eager cattrs``: the plain loop, each dict structured into our `Job` by our cattrs
  converter at once (`structure_eager`).
- ``msgspec`` and ``pydantic`` (``bench`` extra): the body decoded into equivalent classes.

Like with like: every contender runs under the collector settings the process has (the library
leaves them alone; nothing here changes them), and each drops a page before it fetches the next
one, freeing it from the event loop while the next request is on the wire, as sieve_async does.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from sieve_async import Job, SieveClient
from sieve_async._convert import structure_eager

from ._alternatives import page_decoders
from ._reads import READS, Read
from ._server import API_KEY, serve
from ._stats import interleaved, median, median_ratio

OWNER, FUNCTION = "bench", "listing"
PAGE_SIZE = 500

#: A body to a page's jobs (typed or not) and its ``next_offset``.
Decode = Callable[[aiohttp.ClientResponse], Awaitable[tuple[list[Any], int | None]]]


def _jobs_url(url: str) -> str:
    return f"{url}/v2/functions/{OWNER}/{FUNCTION}/jobs"


async def ours(url: str, read: Read, read_ahead: int = 0) -> int:
    """sieve_async as a consumer uses it: ``async for``, reading each job with ``read``."""
    count = 0
    async with SieveClient(api_key=API_KEY, base_url=url) as sieve:
        jobs = sieve.list_function_jobs(OWNER, FUNCTION, page_size=PAGE_SIZE, read_ahead=read_ahead)
        async for job in jobs:
            read(job)
            count += 1
    return count


async def _aiohttp_loop(url: str, decode: Decode, read: Read) -> int:
    """Page through with aiohttp alone, stopping at the end marker or a short page."""
    count = 0
    offset = 0
    headers = {"X-API-Key": API_KEY}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            params = {"limit": PAGE_SIZE, "offset": offset}
            async with session.get(_jobs_url(url), params=params) as response:
                response.raise_for_status()
                jobs, next_offset = await decode(response)
            for job in jobs:
                read(job)
            count += len(jobs)
            if next_offset in (-1, None) or len(jobs) < PAGE_SIZE:
                return count
            offset = next_offset
            # Freed while the next request is on the wire, as sieve_async frees its pages.
            loop.call_soon(jobs.clear)
            del jobs


async def _json(response: aiohttp.ClientResponse) -> tuple[list[Any], int | None]:
    document = await response.json()
    return document["data"], document["next_offset"]


async def _orjson(response: aiohttp.ClientResponse) -> tuple[list[Any], int | None]:
    document = orjson.loads(await response.read())
    return document["data"], document["next_offset"]


async def _json_then_cattrs(response: aiohttp.ClientResponse) -> tuple[list[Any], int | None]:
    document = await response.json()
    return [structure_eager(item, Job) for item in document["data"]], document["next_offset"]


def _from_bytes(decode: Callable[[bytes], tuple[list[Any], int | None]]) -> Decode:
    async def decode_body(response: aiohttp.ClientResponse) -> tuple[list[Any], int | None]:
        return decode(await response.read())

    return decode_body


def contenders(url: str) -> dict[str, Callable[[], Awaitable[int]]]:
    """Every contender under its name, ``way: read``."""
    loops: dict[str, Decode] = {
        "plain": _json,
        "floor": _orjson,
        "plain + eager cattrs": _json_then_cattrs,
    }
    for name, decode in page_decoders().items():
        loops[name] = _from_bytes(decode)
    runners: dict[str, Callable[[], Awaitable[int]]] = {}
    for read_name, read in READS.items():
        runners[f"ours: {read_name}"] = lambda read=read: ours(url, read)
        for name, decode in loops.items():
            runners[f"{name}: {read_name}"] = lambda d=decode, r=read: _aiohttp_loop(url, d, r)
    runners["ours, read_ahead=1: id"] = lambda: ours(url, READS["id"], read_ahead=1)
    return runners


async def run(jobs: int, rounds: int) -> dict[str, Any]:
    """Jobs per second of each contender, and same-round ratios of ours to the others."""
    with serve({f"{OWNER}/{FUNCTION}": jobs}) as url:
        runners = contenders(url)
        for name, runner in runners.items():  # warm up: imports, caches, the server's jobs
            got = await runner()
            if got != jobs:
                raise RuntimeError(f"{name} read {got} of {jobs} jobs")
        times = await interleaved(runners, rounds)
    ways = sorted({name.split(": ")[0] for name in times if not name.startswith("ours")})
    ratios: dict[str, dict[str, float]] = {}
    for read_name in READS:
        mine = times[f"ours: {read_name}"]
        # Speed ratios: a time ratio inverted.
        ratios[read_name] = {
            way: median_ratio(times[f"{way}: {read_name}"], mine)
            for way in ways
            if f"{way}: {read_name}" in times
        }
    return {
        "jobs": jobs,
        "gc": f"{'on' if gc.isenabled() else 'off'}, thresholds {gc.get_threshold()}",
        "jobs_per_s": {name: jobs / median(values) for name, values in times.items()},
        "ours_over": ratios,
        "read_ahead_over_floor": median_ratio(times["floor: id"], times["ours, read_ahead=1: id"]),
    }
