"""Faults, a moving list, Retry-After, checkpoints and the API key's safety, over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from servers import app_server

from sieve_async import SieveClient, SieveConfigError, SieveRateLimitError
from sieve_async._transport import parse_retry_after
from sieve_async.testing import TRANSIENT_FAULTS, FakeSieve, Faults, Mutations

pytestmark = pytest.mark.anyio

SHAPES = ["envelope", "bare"]


async def test_twenty_percent_faults_of_every_kind(serve: Any) -> None:
    """With 20% of requests faulted across every transient kind, 3,000 jobs arrive exactly once."""
    faults = Faults(rate=0.2, seed=7, slow_seconds=0.01)
    async with serve(
        {"max_retries": 8}, functions={"sieve/big": 3000}, page_cap=100, faults=faults
    ) as (fake, sieve):
        jobs = await sieve.list_function_jobs("sieve", "big").collect()
        ids = [job.id for job in jobs]
        assert ids == [job["id"] for job in fake.jobs("sieve/big")]
        injected = Counter(r.fault for r in fake.requests if r.fault)
        assert set(injected) == set(TRANSIENT_FAULTS), injected
        # aiohttp itself re-sends once on a kept-alive connection the server dropped, so a
        # "drop" is not always one of our retries.
        failures = sum(n for kind, n in injected.items() if kind not in ("slow", "drop"))
        assert sieve.stats.retries >= failures
        pages = [r for r in fake.requests if r.status == 200 and r.fault in (None, "slow")]
        assert sieve.stats.pages == len(pages)


@pytest.mark.parametrize("shape", SHAPES)
async def test_jobs_inserted_at_head_after_every_page(serve: Any, shape: str) -> None:
    """7 new jobs land at the head after every page: every original job arrives exactly once."""
    async with serve(
        functions={"sieve/a": 1500},
        page_cap=100,
        shape=shape,
        mutations=Mutations(insert_every=1, insert_count=7),
    ) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        ids = [job.id async for job in sieve.list_function_jobs("sieve", "a")]
        assert len(fake.inserted) >= 7 * 14
        assert len(ids) == len(set(ids))
        assert ids == original, "exactly the originals, in server order"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("which", ["read", "random"])
async def test_one_job_leaves_after_every_page(serve: Any, shape: str, which: str) -> None:
    """A job leaves after every page: each job that never left arrives, none twice."""
    mutations = Mutations(remove_every=1, remove=which, seed=3)  # type: ignore[arg-type]
    async with serve(
        functions={"sieve/a": 1500}, page_cap=100, shape=shape, mutations=mutations
    ) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        ids = [job.id async for job in sieve.list_function_jobs("sieve", "a")]
        assert len(fake.removed) >= 15
        assert len(ids) == len(set(ids)), "none twice"
        stayed = [i for i in original if i not in set(fake.removed)]
        assert set(stayed) <= set(ids), "none that stayed is lost"
        assert [i for i in ids if i in set(stayed)] == stayed, "server order kept"


async def test_retry_after_is_honoured(serve: Any) -> None:
    """429 with Retry-After: 1 delays the next attempt by at least one second."""
    faults = Faults(schedule={0: "429"}, retry_after="1")
    async with serve({"retry_wait_initial": 0.0}, functions={"sieve/a": 5}, faults=faults) as (
        fake,
        sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "a").collect()
    assert len(jobs) == 5
    first, second = fake.requests[0], fake.requests[1]
    assert first.status == 429
    assert second.started - first.ended >= 0.95


async def test_backoff_doubles_from_retry_wait_initial_up_to_retry_wait_max(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Without Retry-After, retry n waits retry_wait_initial * 2**(n-1) plus up to
    retry_wait_initial of jitter, at most retry_wait_max; and the client waits at least that."""
    caplog.set_level(logging.INFO, logger="sieve_async")
    faults = Faults(schedule={0: "503", 1: "500", 2: "502"})
    async with serve(
        {"retry_wait_initial": 0.05, "retry_wait_max": 0.125, "max_retries": 3},
        functions={"sieve/a": 5},
        faults=faults,
    ) as (fake, sieve):
        jobs = await sieve.list_function_jobs("sieve", "a").collect()
    assert len(jobs) == 5
    assert [record.status for record in fake.requests] == [503, 500, 502, 200]
    waits = [r.retry_wait for r in caplog.records if hasattr(r, "retry_wait")]
    assert len(waits) == 3
    assert 0.05 <= waits[0] <= 0.1
    assert 0.1 <= waits[1] <= 0.125
    assert waits[2] == 0.125
    for wait, before, after in zip(waits, fake.requests, fake.requests[1:], strict=False):
        assert after.started - before.ended >= wait - 0.01


async def test_retry_after_above_the_backoff_cap_is_waited_in_full(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A Retry-After longer than retry_wait_max (but within retry_after_max) is what the client
    waits, at least."""
    caplog.set_level(logging.INFO, logger="sieve_async")
    faults = Faults(schedule={0: "429"}, retry_after="0.3")
    async with serve(
        {"retry_wait_initial": 0.001, "retry_wait_max": 0.01, "retry_after_max": 0.5},
        functions={"sieve/a": 5},
        faults=faults,
    ) as (fake, sieve):
        await sieve.list_function_jobs("sieve", "a").collect()
    waits = [r.retry_wait for r in caplog.records if hasattr(r, "retry_wait")]
    assert waits == [0.3]
    assert fake.requests[1].started - fake.requests[0].ended >= 0.29


async def test_retry_after_is_capped(serve: Any) -> None:
    """A Retry-After beyond retry_after_max waits only retry_after_max."""
    faults = Faults(schedule={0: "429"}, retry_after="3600")
    async with serve({"retry_after_max": 0.2}, functions={"sieve/a": 5}, faults=faults) as (
        fake,
        sieve,
    ):
        started = time.monotonic()
        await sieve.list_function_jobs("sieve", "a").collect()
        assert time.monotonic() - started < 30
    assert fake.requests[1].started - fake.requests[0].ended >= 0.19


async def test_rate_limit_error_counts_attempts(serve: Any) -> None:
    """When retries run out on 429s, the error says how many attempts were made."""
    async with serve({"max_retries": 3}, faults=Faults(rate=1.0, kinds=("429",))) as (_, sieve):
        with pytest.raises(SieveRateLimitError, match="after 4 attempts"):
            await sieve.list_function_jobs("sieve", "retalker").collect()


def test_parse_retry_after_forms() -> None:
    """Retry-After as delay-seconds or HTTP-date (RFC 9110 §10.2.3); junk gives no hint."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert (
        parse_retry_after(
            format_datetime(now - timedelta(hours=1), usegmt=True), now=now.timestamp()
        )
        == 0.0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("shape", SHAPES)
async def test_checkpoint_resumes_exactly_once(serve: Any, shape: str) -> None:
    """Stopped after 437 jobs, a JSON round-tripped checkpoint delivers the rest exactly once."""
    async with serve(functions={"sieve/a": 1234}, page_cap=100, shape=shape) as (fake, sieve):
        first: list[str] = []
        paginator = sieve.list_function_jobs("sieve", "a", status=None, read_ahead=2)
        async with paginator:
            async for job in paginator:
                first.append(job.id)
                if len(first) == 437:
                    break
        saved = json.dumps(paginator.checkpoint)
        rest = await sieve.list_function_jobs("sieve", "a", resume=json.loads(saved)).collect()
        ids = first + [job.id for job in rest]
        assert ids == [job["id"] for job in fake.jobs("sieve/a")]


async def test_checkpoint_survives_jobs_landing_before_resume(serve: Any) -> None:
    """Jobs that land at the head between stop and resume are neither repeated nor in the way."""
    async with serve(functions={"sieve/a": 600}, page_cap=100) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a")
        first = [
            job.id for job in await sieve.list_function_jobs("sieve", "a", max_items=250).collect()
        ]
        async for job in paginator:
            if job.id == first[-1]:
                break
        fake.insert_jobs("sieve/a", 40)
        rest = await sieve.list_function_jobs("sieve", "a", resume=paginator.checkpoint).collect()
        assert first + [job.id for job in rest] == original


async def test_checkpoint_of_another_listing_is_refused(serve: Any) -> None:
    """resume= with a checkpoint of another listing raises ValueError before any request."""
    async with serve() as (fake, sieve):
        checkpoint = sieve.list_function_jobs("sieve", "retalker").checkpoint
        retalker = "'/v2/functions/sieve/retalker/jobs'"
        whisper = "'/v2/functions/sieve/whisper/jobs'"
        errors = "'/v2/functions/sieve/retalker/jobs?status=error'"
        with pytest.raises(ValueError, match=re.escape(f"listing {retalker}, not {whisper}")):
            sieve.list_function_jobs("sieve", "whisper", resume=checkpoint)
        with pytest.raises(ValueError, match=re.escape(f"listing {retalker}, not {errors}")):
            sieve.list_function_jobs("sieve", "retalker", status="error", resume=checkpoint)
        with pytest.raises(ValueError, match=r"^checkpoint 'version' is missing"):
            sieve.list_function_jobs("sieve", "retalker", resume={"offset": 3})
        assert fake.requests == []


async def test_redirect_to_another_origin_drops_the_key() -> None:
    """A redirect to a second local server on another origin never carries X-API-Key."""
    async with FakeSieve(api_key=None) as other, FakeSieve(redirect_to=other.url) as front:
        async with SieveClient(api_key=front.api_key, base_url=front.url) as sieve:
            jobs = await sieve.list_function_jobs("sieve", "whisper").collect()
        assert len(jobs) == len(other.jobs("sieve/whisper"))
        assert front.requests[0].sent_api_key
        assert other.requests
        assert not any(record.sent_api_key for record in other.requests)


async def test_same_origin_redirect_keeps_the_key() -> None:
    """A redirect within the same origin is followed with the key."""
    hits: list[bool] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect("/v2/functions/sieve/whisper/jobs?offset=0")

    async def target(request: web.Request) -> web.Response:
        hits.append(request.headers.get("X-API-Key") == "k")
        return web.json_response({"data": [{"id": "x"}], "next_offset": -1})

    routes = {"/v2/functions/sieve/old/jobs": moved, "/v2/functions/sieve/whisper/jobs": target}
    async with app_server(routes) as url, SieveClient(api_key="k", base_url=url) as sieve:
        jobs = await sieve.list_function_jobs("sieve", "old").collect()
    assert [job.id for job in jobs] == ["x"]
    assert hits == [True]


def test_plain_http_refused_except_loopback_or_opt_in() -> None:
    """http:// to a remote host is refused unless allow_insecure_http=True; loopback is fine."""
    with pytest.raises(SieveConfigError, match="unencrypted"):
        SieveClient(api_key="k", base_url="http://api.example.com")
    SieveClient(api_key="k", base_url="http://api.example.com", allow_insecure_http=True)
    SieveClient(api_key="k", base_url="http://localhost:8080")
    SieveClient(api_key="k", base_url="http://127.0.0.1:8080")
    with pytest.raises(SieveConfigError):
        SieveClient(api_key="k", base_url="ftp://example.com")
    with pytest.raises(SieveConfigError, match="credentials"):
        SieveClient(api_key="k", base_url="https://user:pw@example.com")


async def test_path_segments_are_percent_encoded(serve: Any) -> None:
    """Owner and function names are percent-encoded, so they cannot change the path."""
    async with serve(functions={"my org/vidéo?x": 3}) as (fake, sieve):
        jobs = await sieve.list_function_jobs("my org", "vidéo?x").collect()
        assert len(jobs) == 3
        assert fake.requests[0].path == "/v2/functions/my org/vidéo?x/jobs"


async def test_client_wide_connection_bound(serve: Any) -> None:
    """max_connections bounds requests in flight across every paginator of the client."""
    async with serve(
        {"max_connections": 3},
        functions={f"o/f{i}": 300 for i in range(6)},
        page_cap=50,
        latency=0.01,
    ) as (fake, sieve):
        paginators = [sieve.list_function_jobs("o", f"f{i}", read_ahead=4) for i in range(6)]
        results = await asyncio.gather(*(p.collect() for p in paginators))
        assert [len(r) for r in results] == [300] * 6
        assert fake.max_in_flight <= 3


async def test_rate_limit_spaces_requests(serve: Any) -> None:
    """rate_limit=20 spaces request starts about 50 ms apart (allowing the first burst)."""
    async with serve({"rate_limit": 20}, functions={"sieve/a": 200}, page_cap=20) as (fake, sieve):
        await sieve.list_function_jobs("sieve", "a").collect()
    starts = [r.started for r in fake.requests]
    assert len(starts) >= 10
    assert starts[-1] - starts[0] >= (len(starts) - 2) / 20 * 0.9


def test_parse_retry_after_dates_in_any_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP-date with a UTC offset counts from that offset; one with ``-0000`` (no zone
    known) is UTC, whatever the local time zone is."""
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    monkeypatch.setenv("TZ", "XST-05:30")
    time.tzset()
    try:
        assert parse_retry_after("Thu, 01 Jan 2026 01:00:30 +0100", now=now) == 30.0
        assert parse_retry_after("Wed, 31 Dec 2025 19:00:45 -0500", now=now) == 45.0
        assert parse_retry_after("Thu, 01 Jan 2026 00:00:20 -0000", now=now) == 20.0
        assert parse_retry_after("Thu, 01 Jan 2026 00:00:20 GMT", now=now) == 20.0
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_fanout_bound_holds_for_retries_too(serve: Any) -> None:
    """A request retried inside a fan-out still counts against its concurrency: at most one
    request in flight at concurrency=1, first attempts and retries alike."""
    names = [f"o/f{i}" for i in range(4)]
    faults = Faults(schedule={0: "503", 2: "503", 3: "503", 5: "503"})
    async with serve(
        {"max_connections": 8},
        functions=dict.fromkeys(names, 60),
        page_cap=20,
        latency=0.01,
        faults=faults,
    ) as (fake, sieve):
        jobs = [job async for _, job in sieve.list_jobs_for_functions(names, concurrency=1)]
        assert len(jobs) == 4 * 60
        assert [r.status for r in fake.requests].count(503) == 4
        assert fake.max_in_flight == 1
