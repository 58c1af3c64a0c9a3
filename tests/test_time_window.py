"""``since=`` / ``until=`` on the job listings and the fan-out; ``max_items=`` on the fan-out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiohttp import web
from servers import app_server

from sieve_async import SieveClient

pytestmark = pytest.mark.anyio


def created(job: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(job["created_at"]).replace(tzinfo=UTC)


async def test_since_stops_a_newest_first_listing_at_its_first_older_job(serve: Any) -> None:
    """Exactly the jobs created at or after ``since``, and no page past the first older job."""
    async with serve(functions={"sieve/a": 200}) as (fake, sieve):
        jobs = fake.jobs("sieve/a")
        since = created(jobs[45])
        got = await sieve.list_function_jobs("sieve", "a", since=since, page_size=10).collect()
        assert [job.id for job in got] == [job["id"] for job in jobs[:46]]
        # Pages of 10 new jobs (the overlap item asked on top): the fifth finds job 46.
        assert len(fake.requests) == 5


async def test_until_and_since_as_iso_strings_keep_a_half_open_window(serve: Any) -> None:
    """``since`` is inclusive, ``until`` exclusive; a string without an offset is UTC, one with
    an offset means that moment."""
    async with serve(functions={"sieve/a": 120}) as (fake, sieve):
        jobs = fake.jobs("sieve/a")
        since = jobs[80]["created_at"]
        until = created(jobs[20]).astimezone(timezone(timedelta(hours=2))).isoformat()
        assert not since.endswith("+00:00") and until.endswith("+02:00")
        wanted = [job["id"] for job in jobs[21:81]]
        got = await sieve.list_jobs(since=since, until=until).collect()
        assert [job.id for job in got] == wanted
        mine = sieve.list_version_jobs("sieve", "a", "latest", since=since, until=until)
        assert [job.id for job in await mine.collect()] == wanted


@pytest.mark.parametrize("max_items", [5, 8, 15])
async def test_max_items_counts_the_jobs_in_the_window(serve: Any, max_items: int) -> None:
    """max_items counts the jobs delivered, not the ones left out before the window, within a
    page or across pages."""
    async with serve(functions={"sieve/a": 100}) as (fake, sieve):
        jobs = fake.jobs("sieve/a")
        paginator = sieve.list_function_jobs(
            "sieve", "a", until=created(jobs[30]), max_items=max_items, page_size=7
        )
        wanted = [j["id"] for j in jobs[31 : 31 + max_items]]
        assert [job.id for job in await paginator.collect()] == wanted
        # It stops once max_items are in: 6 new jobs a page (7, less the overlap).
        assert len(fake.listing_requests()) <= (31 + max_items) // 6 + 2


async def test_a_window_resumes_from_its_checkpoint(serve: Any) -> None:
    """A checkpoint taken inside a window continues it: nothing lost, nothing repeated."""
    async with serve(functions={"sieve/a": 150}) as (fake, sieve):
        jobs = fake.jobs("sieve/a")
        window = {"since": created(jobs[90]), "until": created(jobs[10])}
        first = sieve.list_function_jobs("sieve", "a", page_size=20, **window)
        taken = []
        async for job in first:
            taken.append(job.id)
            if len(taken) == 33:
                break
        rest = sieve.list_function_jobs("sieve", "a", resume=first.checkpoint, **window)
        assert taken + [job.id for job in await rest.collect()] == [
            job["id"] for job in jobs[11:91]
        ]


@asynccontextmanager
async def shuffled_listing(jobs: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A server listing ``jobs`` in the order given (not newest first), 10 a page."""

    async def listing(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        page = jobs[offset : offset + 10]
        following = offset + len(page) if offset + len(page) < len(jobs) else -1
        return web.Response(
            body=orjson.dumps({"data": page, "next_offset": following}),
            content_type="application/json",
        )

    async with app_server({"/v2/functions/sieve/a/jobs": listing}) as url:
        yield url


async def test_a_listing_out_of_order_is_filtered_to_its_end_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not newest-first: every job in the window is found, with one warning naming the listing."""
    caplog.set_level(logging.WARNING, logger="sieve_async")
    base = datetime(2025, 6, 1, tzinfo=UTC)
    hours = [0, 1, 5, 6, 2, 7, 8, 9, 10, 11, 12, 3, 13, 14, 15, 4, 16, 17, 18, 19, 20, 21]
    jobs = [
        {"id": f"j{h}", "status": "finished", "created_at": (base - timedelta(hours=h)).isoformat()}
        for h in hours
    ]
    async with shuffled_listing(jobs) as url, SieveClient(api_key="k", base_url=url) as sieve:
        got = await sieve.list_function_jobs(
            "sieve", "a", since=base - timedelta(hours=4, minutes=30)
        ).collect()
    assert [job.id for job in got] == ["j0", "j1", "j2", "j3", "j4"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "/v2/functions/sieve/a/jobs: jobs are not newest-first; reading the whole listing to "
        "apply since="
    ]


async def test_fan_out_window_and_max_items_over_all_listings(serve: Any) -> None:
    """since= applies to each listing; max_items bounds the jobs of all listings together, and
    the checkpoints continue exactly after the last job handed out."""
    functions = {"sieve/a": 80, "sieve/b": 60, "acme/c": 40}
    async with serve(functions=functions) as (fake, sieve):
        since = datetime(2025, 6, 1, tzinfo=UTC) - timedelta(hours=12)
        wanted = {
            name: [job["id"] for job in fake.jobs(name) if created(job) >= since]
            for name in functions
        }
        assert all(0 < len(ids) < functions[name] for name, ids in wanted.items())
        everything = sieve.list_jobs_for_functions(functions, since=since, page_size=10)
        got: dict[str, list[str]] = {name: [] for name in functions}
        async for ref, job in everything:
            got[str(ref)].append(job.id)
        assert got == wanted

        limited = sieve.list_jobs_for_functions(functions, since=since, page_size=7, max_items=9)
        first = [(str(ref), job.id) async for ref, job in limited]
        assert len(first) == 9
        rest = sieve.list_jobs_for_functions(
            functions, since=since.isoformat(), page_size=7, resume=limited.checkpoints
        )
        second = [(str(ref), job.id) async for ref, job in rest]
        for name, ids in wanted.items():
            assert [i for n, i in first + second if n == name] == ids


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": datetime(2025, 6, 1)}, r"since must be a timezone-aware datetime"),
        ({"until": "yesterday"}, r"until must be an ISO 8601 date or date-time .* 'yesterday'"),
        ({"since": 1748736000}, r"since must be a timezone-aware datetime or an ISO string"),
        (
            {"since": "2025-06-02", "until": "2025-06-01"},
            r"until= \(2025-06-01T00:00:00\+00:00\) must be after since= \(2025-06-02",
        ),
    ],
)
async def test_a_bad_window_is_refused_before_any_request(
    serve: Any, options: dict[str, Any], message: str
) -> None:
    """ValueError at the call, for each listing and the fan-out; nothing is sent."""
    async with serve() as (fake, sieve):
        with pytest.raises(ValueError, match=message):
            sieve.list_function_jobs("sieve", "retalker", **options)
        with pytest.raises(ValueError, match=message):
            sieve.list_jobs_for_functions(["sieve/retalker"], **options)
        with pytest.raises(TypeError, match=r"list_functions\(\) got an unexpected .* 'since'"):
            sieve.list_functions(since="2025-06-01")  # type: ignore[call-arg]
    assert fake.requests == []


async def test_a_window_reads_timestamps_as_the_models_do(serve_payloads: Any) -> None:
    """RFC 3339 forms the standard library's parser refuses (lowercase t and z, a leap second)
    are placed in the window like any other, not kept unfiltered."""
    page = [
        {"id": "in", "created_at": "2024-12-02t00:00:00z"},
        {"id": "leap", "created_at": "2024-11-30T23:59:60Z"},
        {"id": "old", "created_at": "2024-11-01t00:00:00z"},
    ]
    async with serve_payloads() as (payloads, sieve):
        payloads.items["/v2/functions/sieve/a/jobs"] = page
        since = datetime(2024, 12, 1, tzinfo=UTC)
        got = await sieve.list_function_jobs("sieve", "a", since=since).collect()
    assert [job.id for job in got] == ["in"]
