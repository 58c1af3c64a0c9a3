"""Listings over HTTP against FakeSieve: every item exactly once, in server order."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sieve_async import Function, FunctionVersion, Job, JobStatus, SieveInvalidRequestError

pytestmark = pytest.mark.anyio

SHAPES = ["envelope", "bare"]


@pytest.mark.parametrize("shape", SHAPES)
async def test_server_cap_below_page_size_yields_every_job_once(serve: Any, shape: str) -> None:
    """A server capping pages at 100 while we ask for 500 still yields all 1,234 jobs in order."""
    async with serve(functions={"sieve/retalker": 1234}, page_cap=100, shape=shape) as (
        fake,
        sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "retalker", page_size=500).collect()
        assert [job.id for job in jobs] == [job["id"] for job in fake.jobs("sieve/retalker")]
        assert all(isinstance(job, Job) for job in jobs)
        # The first page asks for 500; the others for the overlap item on top.
        assert {r.query["limit"] for r in fake.listing_requests()} == {"500", "501"}


@pytest.mark.parametrize("read_ahead", [0, 2])
async def test_jobs_kept_from_earlier_pages_stay_whole(serve: Any, read_ahead: int) -> None:
    """Pages are let go as the listing moves on; the jobs a consumer kept keep all they hold."""
    async with serve(functions={"sieve/kept": 250}) as (fake, sieve):
        kept = []
        async for job in sieve.list_function_jobs(
            "sieve", "kept", page_size=50, read_ahead=read_ahead
        ):
            kept.append(job)
        assert [job.raw for job in kept] == fake.jobs("sieve/kept")
        assert [job.created_at for job in kept] == sorted(
            (job.created_at for job in kept), reverse=True
        )


@pytest.mark.parametrize("shape", SHAPES)
async def test_empty_listing(serve: Any, shape: str) -> None:
    """An empty listing yields nothing after one request."""
    async with serve(functions={"sieve/empty": 0}, shape=shape) as (fake, sieve):
        assert await sieve.list_function_jobs("sieve", "empty").collect() == []
        assert len(fake.listing_requests()) == 1


@pytest.mark.parametrize("shape", SHAPES)
async def test_exact_multiple_of_page_size(serve: Any, shape: str) -> None:
    """A listing of exactly 3 full pages yields each job once and stops."""
    async with serve(functions={"sieve/even": 300}, shape=shape) as (fake, sieve):
        jobs = await sieve.list_function_jobs("sieve", "even", page_size=100).collect()
        assert [j.id for j in jobs] == [j["id"] for j in fake.jobs("sieve/even")]
        # Windows overlap by one item (exactly-once under a moving list), so 99 new per page
        # after the first; a bare array needs one more request to see the end.
        assert len(fake.listing_requests()) <= 5


@pytest.mark.parametrize("shape", SHAPES)
async def test_max_items_bounds_requests(serve: Any, shape: str) -> None:
    """max_items=250 at page size 100 stops after 250 jobs and at most 3 requests."""
    async with serve(functions={"sieve/retalker": 1234}, shape=shape) as (fake, sieve):
        jobs = await sieve.list_function_jobs(
            "sieve", "retalker", page_size=100, max_items=250
        ).collect()
        assert [j.id for j in jobs] == [j["id"] for j in fake.jobs("sieve/retalker")[:250]]
        assert len(fake.listing_requests()) <= 3


async def test_status_filter_is_sent_and_applied(serve: Any) -> None:
    """status= reaches the server and only jobs of that status come back."""
    async with serve(functions={"sieve/retalker": 500}, page_cap=50) as (fake, sieve):
        jobs = await sieve.list_function_jobs("sieve", "retalker", status="error").collect()
        expected = fake.jobs("sieve/retalker", status="error")
        assert [j.id for j in jobs] == [j["id"] for j in expected]
        assert all(j.status is JobStatus.ERROR for j in jobs)
        assert {r.query.get("status") for r in fake.listing_requests()} == {"error"}


async def test_other_listings(serve: Any) -> None:
    """list_jobs, list_functions, list_function_versions and list_version_jobs all page."""
    async with serve(functions={"sieve/a": 130, "acme/b": 70}, page_cap=40) as (fake, sieve):
        every = await sieve.list_jobs().collect()
        assert [j.id for j in every] == [j["id"] for j in fake.all_jobs()]
        functions = await sieve.list_functions().collect()
        assert {str(f.ref) for f in functions} == {"sieve/a", "acme/b"}
        assert all(isinstance(f, Function) for f in functions)
        versions = await sieve.list_function_versions("sieve", "a").collect()
        assert len(versions) == 1 and isinstance(versions[0], FunctionVersion)
        latest = await sieve.list_version_jobs("sieve", "a", "latest").collect()
        assert [j.id for j in latest] == [j["id"] for j in fake.jobs("sieve/a")]


async def test_pages_expose_offsets(serve: Any) -> None:
    """pages() yields Page objects whose items chain to the whole listing."""
    async with serve(functions={"sieve/a": 250}) as (fake, sieve):
        pages = [p async for p in sieve.list_function_jobs("sieve", "a", page_size=100).pages()]
        assert [j.id for p in pages for j in p.items] == [j["id"] for j in fake.jobs("sieve/a")]
        assert pages[0].offset == 0 and pages[0].next_offset == 100
        assert pages[-1].next_offset is None


async def test_no_request_until_iterated(serve: Any) -> None:
    """Creating a paginator sends nothing."""
    async with serve() as (fake, sieve):
        sieve.list_function_jobs("sieve", "retalker")
        assert fake.requests == []


async def test_own_session_is_used_and_left_open() -> None:
    """A session passed in carries the requests and stays open after the client closes."""
    import aiohttp

    from sieve_async import SieveClient
    from sieve_async.testing import FakeSieve

    async with FakeSieve(functions={"sieve/a": 30}) as fake, aiohttp.ClientSession() as session:
        sieve = SieveClient(api_key=fake.api_key, base_url=fake.url, session=session)
        assert len(await sieve.list_function_jobs("sieve", "a").collect()) == 30
        await sieve.aclose()
        await sieve.aclose()
        assert not session.closed
        async with session.get(fake.url + "/v2/functions") as response:
            assert response.status == 401, "the session itself holds no key"


async def test_repr_names_the_listing_and_the_offset_delivered(serve: Any) -> None:
    """repr() shows the listing and how far it has been delivered, item by item and by page."""
    async with serve(functions={"sieve/a": 250}) as (_fake, sieve):
        paginator = sieve.list_function_jobs("sieve", "a", page_size=100)
        assert repr(paginator) == "<AsyncPaginator /v2/functions/sieve/a/jobs at offset 0>"
        for _ in range(3):
            await anext(paginator)
        assert repr(paginator) == "<AsyncPaginator /v2/functions/sieve/a/jobs at offset 3>"
        await anext(paginator.pages())
        assert repr(paginator) == "<AsyncPaginator /v2/functions/sieve/a/jobs at offset 100>"
        finished = sieve.list_function_jobs("sieve", "a", status="finished")
        assert repr(finished) == (
            "<AsyncPaginator /v2/functions/sieve/a/jobs?status=finished at offset 0>"
        )


@pytest.mark.parametrize(("shape", "requests"), [("envelope", 5), ("bare", 6)])
async def test_the_overlap_item_costs_no_request(serve: Any, shape: str, requests: int) -> None:
    """500 jobs in pages of 100 take as many requests as a loop without the overlap: five for
    an envelope (its last page says it is the end), six for a bare array (a sixth page shows
    it). Each window after the first asks for 101 from the last job delivered."""
    async with serve(functions={"sieve/a": 500}, shape=shape) as (fake, sieve):
        jobs = await sieve.list_function_jobs("sieve", "a", page_size=100).collect()
        assert [job.id for job in jobs] == [job["id"] for job in fake.jobs("sieve/a")]
        windows = [(r.query["offset"], r.query["limit"]) for r in fake.listing_requests()]
        assert windows[:5] == [
            ("0", "100"),
            ("99", "101"),
            ("199", "101"),
            ("299", "101"),
            ("399", "101"),
        ]
        assert len(windows) == requests


@pytest.mark.parametrize("read_ahead", [0, 2])
@pytest.mark.parametrize("shape", SHAPES)
async def test_a_server_refusing_the_overlap_on_top_is_read_with_pages_of_page_size(
    serve: Any, shape: str, read_ahead: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A server refusing any limit above 100 (422) answers the second window's 101: the
    listing asks for 100 from then on, says so once at INFO, and delivers every job once;
    read ahead, the windows already in flight are refused too and nothing else."""
    async with serve(functions={"sieve/a": 450}, shape=shape, max_limit=100) as (fake, sieve):
        with caplog.at_level(logging.INFO, logger="sieve_async"):
            jobs = await sieve.list_function_jobs(
                "sieve", "a", page_size=100, read_ahead=read_ahead
            ).collect()
        assert [job.id for job in jobs] == [job["id"] for job in fake.jobs("sieve/a")]
        statuses = [(r.query["limit"], r.status) for r in fake.listing_requests()]
        assert statuses[0] == ("100", 200)
        refused = [limit for limit, status in statuses if status == 422]
        assert refused == ["101"] * (1 + read_ahead)
        assert {limit for limit, status in statuses if status == 200} == {"100"}
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert said == [
        "/v2/functions/sieve/a/jobs: the server refused limit=101; asking for page_size=100 "
        "from now on"
    ]


async def test_a_refused_page_size_is_still_an_error(serve: Any) -> None:
    """Narrowing is tried once: a page_size the server refuses outright raises as before."""
    async with serve(functions={"sieve/a": 450}, max_limit=50) as (fake, sieve):
        with pytest.raises(SieveInvalidRequestError, match=r"query\.limit"):
            await sieve.list_function_jobs("sieve", "a", page_size=100).collect()
        assert [r.query["limit"] for r in fake.listing_requests()] == ["100"]
