"""Structuring cost in microseconds per job: our converter lazily and eagerly, and alternatives.

"Every field" reads nested fields too (`_reads.read_all`), as an exporter would.

Measured in this process on one page of realistic jobs (FakeSieve's ``make_job``), best of
several repeats, with the garbage collector paused as ``timeit`` does; pydantic v2 and msgspec
are measured only when installed (the ``bench`` extra).
"""

from __future__ import annotations

import json
import random
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from sieve_async import Job
from sieve_async._convert import structure_eager, structure_fn
from sieve_async.testing import make_job

from ._alternatives import alternatives
from ._reads import READS, Read, read_all


def page_of_jobs(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` realistic job dicts, as one page would bring them."""
    rng = random.Random(seed)
    created = datetime(2025, 6, 1, tzinfo=UTC)
    return [make_job(rng, "sieve", "retalker", created, "f-1") for _ in range(count)]


def _per_job(run: Callable[[], object], jobs: int, number: int, repeat: int) -> float:
    best = min(timeit.repeat(run, number=number, repeat=repeat))
    return best / number / jobs * 1e6


def run(jobs: int = 500, number: int = 20, repeat: int = 7) -> dict[str, float]:
    """Microseconds per job of each way to decode or type one page of ``jobs`` jobs."""
    raw = page_of_jobs(jobs)
    body = orjson.dumps(raw)
    lazy = structure_fn(Job)

    def lazy_create() -> object:
        return [lazy(item) for item in raw]

    def lazy_then(read: Read) -> Callable[[], object]:
        def create_and_read() -> None:
            for item in raw:
                read(lazy(item))

        return create_and_read

    def eager() -> object:
        return [structure_eager(item, Job) for item in raw]

    def eager_every_field() -> None:
        for item in raw:
            read_all(structure_eager(item, Job))

    ways: dict[str, Callable[[], object]] = {
        "json.loads (decode only)": lambda: json.loads(body),
        "orjson.loads (decode only)": lambda: orjson.loads(body),
        "dicts: every field read": lambda: [read_all(item) for item in raw],
        "sieve_async lazy: create": lazy_create,
    }
    for name, read in READS.items():
        ways[f"sieve_async lazy: create + {name}"] = lazy_then(read)
    ways["sieve_async eager (cattrs)"] = eager
    ways["sieve_async eager (cattrs) + every field"] = eager_every_field
    for name, make in alternatives(raw, body).items():
        ways[name] = make
    return {name: _per_job(way, jobs, number, repeat) for name, way in ways.items()}
