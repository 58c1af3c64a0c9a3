"""Many functions at once, read-ahead within one listing, and clean cancellation."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from servers import app_server

from sieve_async import FunctionRef, SieveClient, SieveNotFoundError
from sieve_async._tasks import TaskRegistry
from sieve_async.testing import FakeSieve, Mutations

pytestmark = pytest.mark.anyio

FIFTY = {f"org{i % 5}/fn{i}": 40 + 5 * i for i in range(50)}


def running_tasks(sieve: SieveClient) -> int:
    """Tasks of the event loop still running code of sieve_async (``sieve`` names the client
    whose work it would be: the only one in these tests)."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if not task.done() and "sieve_async" in task.get_coro().cr_code.co_filename
    )


async def test_fifty_functions_bounded_and_tagged(serve: Any) -> None:
    """50 functions at concurrency 8, 10 ms latency: every job once, tagged, ≤ 8 in flight."""
    async with serve(functions=FIFTY, page_cap=100, latency=0.01) as (fake, sieve):
        seen: Counter[str] = Counter()
        async for ref, job in sieve.list_jobs_for_functions(list(FIFTY), concurrency=8):
            assert isinstance(ref, FunctionRef)
            assert job.raw["function"] == {"name": ref.name, "owner_name": ref.owner_name}
            seen[job.id] += 1
        expected = {job["id"] for name in FIFTY for job in fake.jobs(name)}
        assert set(seen) == expected
        assert max(seen.values()) == 1
        assert fake.max_in_flight <= 8
        assert fake.max_in_flight >= 4, "the fan-out did run listings side by side"
        assert running_tasks(sieve) == 0


async def test_client_bound_caps_fanout_concurrency(serve: Any) -> None:
    """Concurrency above the client's max_connections is held to max_connections."""
    names = list(FIFTY)[:12]
    async with serve(
        {"max_connections": 3}, functions=dict.fromkeys(names, 150), page_cap=50, latency=0.005
    ) as (fake, sieve):
        count = 0
        async for _ in sieve.list_jobs_for_functions(names, concurrency=10):
            count += 1
        assert count == 12 * 150
        assert fake.max_in_flight <= 3


async def test_consumer_stopping_early_stops_fetching(serve: Any) -> None:
    """Taking 11 jobs then closing: only first pages were fetched, nothing after aclose."""
    async with serve(functions=FIFTY, page_cap=100, latency=0.01) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions(list(FIFTY), concurrency=8, buffer_size=1)
        taken = []
        async for pair in jobs:
            taken.append(pair)
            if len(taken) == 11:
                break
        await jobs.aclose()
        fetched = len(fake.requests)
        # Pages hold 100 jobs, so the 11 taken come from the first page handed over. Each of
        # the 2 x 8 open listings fetches at most its first page and then waits to hand it
        # over (one page buffered, one being read); the listing whose page was taken may have
        # asked for its second.
        assert fetched <= 2 * 8 + 1
        await asyncio.sleep(0.1)
        assert len(fake.requests) == fetched, "no request after aclose()"
        assert running_tasks(sieve) == 0


async def test_slow_consumer_holds_producers_back(serve: Any) -> None:
    """Backpressure: while the consumer sleeps, producers stop at the buffer."""
    async with serve(functions=dict.fromkeys(list(FIFTY)[:4], 400), page_cap=20) as (fake, sieve):
        async with sieve.list_jobs_for_functions(
            list(FIFTY)[:4], concurrency=4, buffer_size=2
        ) as jobs:
            await jobs.__anext__()
            await asyncio.sleep(0.2)
            # The page being read, 2 buffered, and one page held by each of the 4 listings
            # that cannot hand it over: of 80 pages, at most 7 were fetched.
            assert len(fake.requests) <= 1 + 2 + 4
        assert running_tasks(sieve) == 0


async def test_not_found_raises_and_cancels_the_rest(serve: Any) -> None:
    """One 404 under on_error='raise' raises SieveNotFoundError and leaves nothing running."""
    names = [*list(FIFTY)[:6], "org0/missing"]
    async with serve(functions=dict.fromkeys(names[:6], 500), page_cap=50, latency=0.01) as (
        fake,
        sieve,
    ):
        with pytest.raises(SieveNotFoundError, match="org0/missing"):
            async for _ in sieve.list_jobs_for_functions(names, concurrency=8):
                pass
        assert running_tasks(sieve) == 0
        requests = len(fake.requests)
        await asyncio.sleep(0.05)
        assert len(fake.requests) == requests


async def test_not_found_continue_reports_failure(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Under on_error='continue' every other function's jobs arrive; the failure is listed and
    logged at INFO (handled, so not a warning) naming the listing and the error."""
    names = [*list(FIFTY)[:6], "org0/missing"]
    async with serve(functions=dict.fromkeys(names[:6], 130), page_cap=50) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions(names, concurrency=3, on_error="continue")
        with caplog.at_level(logging.INFO, logger="sieve_async"):
            ids = [job.id async for _, job in jobs]
        assert sorted(ids) == sorted(job["id"] for n in names[:6] for job in fake.jobs(n))
        assert [(str(ref), type(err)) for ref, err in jobs.failures] == [
            ("org0/missing", SieveNotFoundError)
        ]
        assert len(jobs.completed) == 6
        error = jobs.failures[0][1]
        warnings = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sieve_async"]
        assert warnings == [(logging.INFO, f"listing org0/missing failed: {error}")]


async def test_closing_client_stops_an_unclosed_fanout() -> None:
    """Leaving `async with SieveClient()` cancels and awaits a fan-out left mid-way."""
    async with FakeSieve(functions=dict.fromkeys(list(FIFTY)[:5], 300), page_cap=30) as fake:
        async with SieveClient(api_key=fake.api_key, base_url=fake.url) as sieve:
            jobs = sieve.list_jobs_for_functions(list(FIFTY)[:5], concurrency=5)
            async for _ in jobs:
                break
        assert running_tasks(sieve) == 0
        requests = len(fake.requests)
        await asyncio.sleep(0.05)
        assert len(fake.requests) == requests


@pytest.mark.parametrize("shape", ["envelope", "bare"])
@pytest.mark.parametrize("cap", [None, 37])
async def test_read_ahead_delivers_in_order(serve: Any, shape: str, cap: int | None) -> None:
    """read_ahead=4 yields the same jobs in the same order, re-aligning to a smaller cap."""
    async with serve(functions={"sieve/a": 1000}, shape=shape, page_cap=cap, latency=0.002) as (
        fake,
        sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "a", page_size=50, read_ahead=4).collect()
        assert [j.id for j in jobs] == [j["id"] for j in fake.jobs("sieve/a")]
    assert running_tasks(sieve) == 0


async def test_read_ahead_fetches_in_parallel(serve: Any) -> None:
    """With read_ahead=4, up to 5 requests of one listing are in flight together."""
    async with serve(functions={"sieve/a": 2000}, page_cap=100, latency=0.02) as (fake, sieve):
        jobs = await sieve.list_function_jobs("sieve", "a", page_size=100, read_ahead=4).collect()
        assert len(jobs) == 2000
        assert fake.max_in_flight >= 4


async def test_read_ahead_under_a_moving_list(serve: Any) -> None:
    """Read-ahead keeps exactly-once when jobs land at the head after every page."""
    async with serve(
        functions={"sieve/a": 1200},
        page_cap=100,
        mutations=Mutations(insert_every=1, insert_count=5),
    ) as (fake, sieve):
        original = [j["id"] for j in fake.jobs("sieve/a")]
        jobs = await sieve.list_function_jobs("sieve", "a", page_size=100, read_ahead=3).collect()
        assert [j.id for j in jobs] == original


async def test_read_ahead_aclose_sends_nothing_more(serve: Any) -> None:
    """Stopping a read-ahead paginator early cancels its look-ahead; nothing is sent after."""
    async with serve(functions={"sieve/a": 3000}, page_cap=100, latency=0.02) as (fake, sieve):
        async with sieve.list_function_jobs("sieve", "a", page_size=100, read_ahead=6) as pages:
            async for _ in pages:
                break
        assert running_tasks(sieve) == 0
        sent = len(fake.requests)
        assert sent <= 7
        await asyncio.sleep(0.1)
        assert len(fake.requests) == sent


async def test_read_ahead_left_open_is_closed_with_client() -> None:
    """A read-ahead paginator abandoned mid-way is cleaned up by closing the client."""
    async with FakeSieve(functions={"sieve/a": 3000}, page_cap=100, latency=0.01) as fake:
        async with SieveClient(api_key=fake.api_key, base_url=fake.url) as sieve:
            async for _ in sieve.list_function_jobs("sieve", "a", read_ahead=5):
                break
        assert running_tasks(sieve) == 0


async def test_fanout_checkpoints_resume_exactly_once(serve: Any) -> None:
    """Stopped mid-way, a fan-out's JSON round-tripped checkpoints finish every listing once."""
    import json

    names = list(FIFTY)[:6]
    async with serve(functions={n: 150 + 40 * i for i, n in enumerate(names)}, page_cap=30) as (
        fake,
        sieve,
    ):
        expected = {job["id"] for n in names for job in fake.jobs(n)}
        first: list[str] = []
        async with sieve.list_jobs_for_functions(names, concurrency=3) as jobs:
            async for _, job in jobs:
                first.append(job.id)
                if len(first) == 437:
                    break
            saved = json.dumps(jobs.checkpoints)
        assert any(state != "done" for state in json.loads(saved).values())
        rest = [
            job.id
            async for _, job in sieve.list_jobs_for_functions(
                names, concurrency=3, resume=json.loads(saved)
            )
        ]
        assert len(first) + len(rest) == len(expected)
        assert set(first) | set(rest) == expected


async def test_fanout_checkpoints_after_a_full_run_are_all_done(serve: Any) -> None:
    """After a complete run every listing is 'done', and resuming from that sends nothing."""
    names = list(FIFTY)[:3]
    async with serve(functions=dict.fromkeys(names, 70), page_cap=25) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions(names, concurrency=2)
        assert len([pair async for pair in jobs]) == 210
        assert jobs.checkpoints == dict.fromkeys(names, "done")
        sent = len(fake.requests)
        again = sieve.list_jobs_for_functions(names, resume=jobs.checkpoints)
        assert [pair async for pair in again] == []
        assert len(fake.requests) == sent


async def test_fanout_resume_is_checked_before_any_request(serve: Any) -> None:
    """resume= naming another function, or a checkpoint of another listing, is a ValueError."""
    names = list(FIFTY)[:2]
    async with serve(functions=dict.fromkeys(names, 10)) as (fake, sieve):
        other = sieve.list_function_jobs("sieve", "retalker").checkpoint
        with pytest.raises(ValueError, match="not among"):
            sieve.list_jobs_for_functions(names, resume={"x/y": "done"})
        with pytest.raises(ValueError, match="belongs to listing"):
            sieve.list_jobs_for_functions(names, resume={names[0]: other})
        unfiltered = sieve.list_function_jobs(*names[0].split("/")).checkpoint
        with pytest.raises(ValueError, match="belongs to listing"):
            sieve.list_jobs_for_functions(names, status="error", resume={names[0]: unfiltered})
        assert fake.requests == []


async def test_fanout_pages_and_stop(serve: Any) -> None:
    """pages() hands out whole pages; stop() ends one listing, which then counts as done."""
    names = list(FIFTY)[:2]
    async with serve(functions=dict.fromkeys(names, 200), page_cap=40) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions(names, concurrency=2)
        seen: dict[str, list[str]] = {name: [] for name in names}
        async for ref, page in jobs.pages():
            assert 0 < len(page) <= 40
            seen[str(ref)] += [job.id for job in page]
            if str(ref) == names[0]:
                jobs.stop(ref)
        assert len(seen[names[0]]) == 40, "nothing of the stopped listing after its first page"
        assert seen[names[1]] == [job["id"] for job in fake.jobs(names[1])]
        assert jobs.checkpoints == dict.fromkeys(names, "done")
        first_listing = [r for r in fake.requests if names[0] in r.path]
        assert len(first_listing) <= 2
        with pytest.raises(ValueError, match="not among"):
            jobs.stop("x/y")


@pytest.mark.parametrize("buffer_size", [1, 7, 1000])
async def test_every_job_once_tagged_with_its_function(serve: Any, buffer_size: int) -> None:
    """Jobs of every function arrive exactly once, each with the function it came from."""
    functions = {f"sieve/fn{i}": 37 * i for i in range(6)}
    async with serve(functions=functions, page_cap=25) as (fake, sieve):
        got: dict[str, list[str]] = {name: [] for name in functions}
        async with sieve.list_jobs_for_functions(
            list(functions), concurrency=3, buffer_size=buffer_size
        ) as jobs:
            async for ref, job in jobs:
                got[str(ref)].append(job.id)
        for name in functions:
            assert got[name] == [job["id"] for job in fake.jobs(name)]


async def test_aclose_right_after_a_task_finished() -> None:
    """A finished task whose done callbacks have not run yet does not make aclose spin."""
    registry = TaskRegistry()

    async def quick() -> int:
        return 1

    task = registry.spawn(quick())
    await asyncio.sleep(0)  # the task finishes; its done callbacks are only scheduled
    assert task.done()
    assert len(registry) == 1
    closing = registry.aclose()
    with pytest.raises(StopIteration):
        closing.send(None)  # finishes without needing the loop
    assert len(registry) == 0


async def hand_out_stopping(jobs: Any, stop: Callable[[], None]) -> dict[str, list[str]]:
    """The job ids a fan-out of sieve/a and sieve/b hands out per listing; ``stop`` is called
    once, at the 5th job of sieve/a."""
    seen: dict[str, list[str]] = {"sieve/a": [], "sieve/b": []}
    async for ref, job in jobs:
        seen[str(ref)].append(job.id)
        if str(ref) == "sieve/a" and len(seen["sieve/a"]) == 5:
            stop()
    return seen


async def test_fanout_stop_mid_page_hands_out_nothing_more_of_that_listing(serve: Any) -> None:
    """stop() on the listing whose page is being handed out drops the rest of that page."""
    a, b = "sieve/a", "sieve/b"
    async with serve(functions={a: 200, b: 200}, page_cap=40) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions([a, b], concurrency=1)

        def stop_a() -> None:
            jobs.stop(a)
            assert a in {str(r) for r in jobs.done}
            assert jobs.checkpoints[a] == "done"

        seen = await hand_out_stopping(jobs, stop_a)
        assert seen[a] == [job["id"] for job in fake.jobs(a)][:5]
        assert seen[b] == [job["id"] for job in fake.jobs(b)]
        assert jobs.checkpoints == {a: "done", b: "done"}
        assert {str(r) for r in jobs.completed} == {b}, "the stopped listing was not read out"


async def test_fanout_stop_of_another_listing_keeps_the_current_page(serve: Any) -> None:
    """stop() on one listing leaves the page of another being handed out whole."""
    a, b = "sieve/a", "sieve/b"
    async with serve(functions={a: 200, b: 200}, page_cap=40) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions([a, b], concurrency=1)
        seen = await hand_out_stopping(jobs, lambda: jobs.stop(b))
        assert seen[a] == [job["id"] for job in fake.jobs(a)]
        assert seen[b] == [job["id"] for job in fake.jobs(b)][: len(seen[b])]
        assert len(seen[b]) % 40 == 0, "pages of the stopped listing came whole or not at all"
        assert jobs.checkpoints == {a: "done", b: "done"}


async def test_fanout_after_aclose_yields_nothing_and_keeps_its_checkpoints(serve: Any) -> None:
    """After aclose(), iterating again raises (a fan-out is one-shot), nothing is sent,
    checkpoints stand still."""
    a, b = "sieve/a", "sieve/b"
    async with serve(functions={a: 200, b: 200}, page_cap=40) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions([a, b], concurrency=2)
        taken = [pair async for pair in _take(jobs, 10)]
        ref = taken[0][0]
        await jobs.aclose()
        checkpoints = jobs.checkpoints
        assert checkpoints[str(ref)]["offset"] == 10
        assert checkpoints[str(ref)]["last_id"] == taken[-1][1].id
        sent = len(fake.requests)
        with pytest.raises(RuntimeError, match="already iterated"):
            [pair async for pair in jobs]
        with pytest.raises(RuntimeError, match="already iterated"):
            jobs.pages()
        assert len(fake.requests) == sent
        assert jobs.checkpoints == checkpoints
        assert running_tasks(sieve) == 0
        await jobs.aclose()
        rest = sieve.list_jobs_for_functions([a, b], resume=checkpoints)
        ids = [job.id for _, job in taken] + [job.id async for _, job in rest]
        assert sorted(ids) == sorted(job["id"] for n in (a, b) for job in fake.jobs(n))


@pytest.mark.parametrize("by_pages", [False, True])
async def test_fanout_closed_before_iteration_sends_nothing(serve: Any, by_pages: bool) -> None:
    """A fan-out closed before it was iterated never starts: nothing handed out, nothing sent."""
    async with serve(functions={"sieve/a": 50}, page_cap=20) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions(["sieve/a"])
        await jobs.aclose()
        assert [item async for item in (jobs.pages() if by_pages else jobs)] == []
        assert fake.requests == []
        assert jobs.checkpoints == {}
        assert running_tasks(sieve) == 0


async def _take(jobs: Any, count: int) -> Any:
    """The first ``count`` pairs of a fan-out, as an async iterator that stops there."""
    taken = 0
    async for pair in jobs:
        yield pair
        taken += 1
        if taken == count:
            return


@pytest.mark.parametrize("read_ahead", [1, 3])
async def test_read_ahead_never_asks_for_a_window_twice(serve: Any, read_ahead: int) -> None:
    """On a list that stays still, every request of a read-ahead listing asks a new window."""
    async with serve(functions={"sieve/a": 200}, latency=0.002) as (fake, sieve):
        original = [job["id"] for job in fake.jobs("sieve/a")]
        paginator = sieve.list_function_jobs("sieve", "a", page_size=20, read_ahead=read_ahead)
        async with paginator:
            assert [job.id async for job in paginator] == original
        windows = [(r.query["offset"], r.query["limit"]) for r in fake.listing_requests()]
        assert len(set(windows)) == len(windows), windows
        # Each window after the first starts at the last job delivered and asks for one more:
        # 20 new jobs a page, as many requests as pages of 20 without the overlap.
        assert [int(offset) for offset, _ in windows][:10] == [0, *range(19, 180, 20)]
        assert paginator.requests == 10


async def test_fanout_repr_and_listings_resumed_as_done(serve: Any) -> None:
    """repr() names the size; a listing resumed as 'done' is done from the start, never asked."""
    a, b = "sieve/a", "sieve/b"
    async with serve(functions={a: 60, b: 60}, page_cap=25) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions([a, b], concurrency=3, resume={a: "done"})
        assert repr(jobs) == "<FanOut 2 listings, concurrency=3>"
        assert set(jobs.done) == {FunctionRef.parse(a)}
        assert jobs.checkpoints == {a: "done"}
        pairs = [(str(ref), job.id) async for ref, job in jobs]
        assert pairs == [(b, job["id"]) for job in fake.jobs(b)]
        assert set(jobs.done) == {FunctionRef.parse(a), FunctionRef.parse(b)}
        assert jobs.completed == [FunctionRef.parse(b)]
        assert not any("/sieve/a/" in r.path for r in fake.requests)


async def test_fanout_pages_after_items_start_with_the_rest_of_the_page(serve: Any) -> None:
    """pages() after some jobs were taken one by one hands out the rest of that page first."""
    a, b = "sieve/a", "sieve/b"
    async with serve(functions={a: 100, b: 100}, page_cap=40) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions([a, b], concurrency=1)
        first = [await anext(jobs) for _ in range(5)]
        ref = first[0][0]
        ids = [job["id"] for job in fake.jobs(str(ref))]
        assert [job.id for r, job in first if r == ref] == ids[:5]
        pages = jobs.pages()
        page_ref, rest = await anext(pages)
        assert page_ref == ref
        assert [job.id for job in rest] == ids[5:40]
        assert jobs.checkpoints[str(ref)]["offset"] == 40
        seen: dict[str, list[str]] = {a: [], b: []}
        seen[str(ref)] = ids[:40]
        async for r, page in pages:
            seen[str(r)] += [job.id for job in page]
        assert seen == {name: [job["id"] for job in fake.jobs(name)] for name in (a, b)}


@pytest.mark.parametrize("taken", [3, 40, 43, 85])
async def test_fanout_checkpoint_carries_recent_ids_across_pages(serve: Any, taken: int) -> None:
    """A fan-out checkpoint names the last job handed out and the 7 before it, across pages."""
    async with serve(functions={"sieve/a": 120}, page_cap=40) as (fake, sieve):
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        listing = sieve.list_function_jobs("sieve", "a").listing
        async with sieve.list_jobs_for_functions(["sieve/a"]) as jobs:
            got = [(await anext(jobs))[1].id for _ in range(taken)]
            checkpoint = jobs.checkpoints["sieve/a"]
        assert got == ids[:taken]
        assert checkpoint == {
            "version": 1,
            "listing": listing,
            "offset": taken,
            "last_id": ids[taken - 1],
            "recent": ids[max(0, taken - 8) : taken - 1],
        }
        assert jobs.checkpoints["sieve/a"] == checkpoint, "closing keeps what was handed out"


async def test_fanout_stop_drops_a_page_of_that_listing_already_on_its_way() -> None:
    """A page of a listing queued for the consumer when stop() is called is never handed out."""
    ids = [f"job-{i:03d}" for i in range(100)]
    third_request = asyncio.Event()
    asked = 0

    async def jobs_route(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        if asked == 3:
            # The producer asks for a third page only once its second is queued.
            third_request.set()
        offset = int(request.query["offset"])
        limit = min(int(request.query.get("limit", "20")), 20)
        page = ids[offset : offset + limit]
        end = offset + len(page) >= len(ids)
        body = {"data": [{"id": i} for i in page], "next_offset": -1 if end else offset + len(page)}
        return web.Response(body=json.dumps(body), content_type="application/json")

    routes = {"/v2/functions/{owner}/{name}/jobs": jobs_route}
    async with app_server(routes) as url, SieveClient(api_key="k", base_url=url) as sieve:
        jobs = sieve.list_jobs_for_functions(["o/f"], buffer_size=1)
        taken = [(await anext(jobs))[1].id for _ in range(5)]
        await third_request.wait()
        jobs.stop("o/f")
        taken += [job.id async for _, job in jobs]
        assert taken == ids[:5]
        assert jobs.checkpoints == {"o/f": "done"}
        assert jobs.completed == []
        assert running_tasks(sieve) == 0
