"""Structuring cost in microseconds per job: our converter lazily and eagerly, and alternatives.

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

import attrs
import orjson

from sieve_async import Job
from sieve_async._convert import structure_eager, structure_fn
from sieve_async.testing import make_job

from ._alternatives import alternatives

FIELDS = [a.name for a in attrs.fields(Job)]


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

    def lazy_id_status() -> None:
        for item in raw:
            job = lazy(item)
            _ = job.id, job.status

    def lazy_all() -> None:
        for item in raw:
            job = lazy(item)
            for name in FIELDS:
                getattr(job, name)

    def eager() -> object:
        return [structure_eager(item, Job) for item in raw]

    ways: dict[str, Callable[[], object]] = {
        "json.loads (decode only)": lambda: json.loads(body),
        "orjson.loads (decode only)": lambda: orjson.loads(body),
        "sieve_async lazy: create": lazy_create,
        "sieve_async lazy: create + id, status": lazy_id_status,
        "sieve_async lazy: create + every field": lazy_all,
        "sieve_async eager (cattrs)": eager,
    }
    for name, make in alternatives(raw, body).items():
        ways[name] = make
    return {name: _per_job(way, jobs, number, repeat) for name, way in ways.items()}
