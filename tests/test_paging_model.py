"""Model-based tests of the paging promise: a listing ends complete, or with SievePaginationError.

A model server holds a list that moves while it is read (jobs land at the head, jobs leave from
anywhere, as a status filter's exits do), cuts each page at a cap that varies per request, and
answers in either shape. The oracle is the promise itself: if the listing ends without an error,
every job that stayed in the list for the whole crawl was delivered exactly once, in server
order, and nothing else was delivered twice; within the documented insertion rate it never ends
with an error. The same scenarios run through the paginator (with read-ahead and a resume from a
checkpoint half way) and, for a smaller sample, over HTTP through FakeSieve.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve_async import SieveClient, SievePaginationError
from sieve_async._paginator import AsyncPaginator
from sieve_async._paging import BARE, ENVELOPE, Cursor, RawPage, Window
from sieve_async._tasks import TaskRegistry
from sieve_async.testing import FakeSieve, Mutations

DEFAULT_LIMIT = 50
#: Scenarios per run against the cursor (a fifth of it against the paginator). The everyday suite
#: explores 300; CI's exploration step raises it to 2,000 (`.ci/run`), a mutation-testing run may
#: lower it to keep each mutant's run short.
CURSOR_EXAMPLES = int(os.environ.get("SIEVE_MODEL_EXAMPLES", "300"))


@dataclass
class Scenario:
    """How the model server behaves, request by request (each list is cycled)."""

    total: int
    shape: str
    page_size: int | None
    caps: list[int]
    inserts: list[int]
    removals: list[int]
    seed: int
    #: Pages requested ahead: each one served moves the list before the page it follows is read.
    read_ahead: int = 0

    @property
    def smallest_page(self) -> int:
        return min(self.page_size or DEFAULT_LIMIT, *self.caps)

    @property
    def within_documented_rate(self) -> bool:
        """Jobs land at the head slower than half a page per request (the README's bound)."""
        return (
            2 * max(self.inserts) * (1 + self.read_ahead) < self.smallest_page - 1
            and (not any(self.removals) or self.smallest_page >= 8)
            # Without a page size a bare array's full page is only known as the longest seen.
            and (self.page_size is not None or self.shape == ENVELOPE)
            # So many jobs leaving that every recently delivered one is gone is no moving list
            # but a new one.
            and sum(self.removals) * 20 <= len(self.removals) * self.total
        )

    @property
    def end_is_knowable(self) -> bool:
        """A bare array has no end marker: a page that ends at the last job delivered and is
        shorter than asked (and than any full page before) is its end. A page cut short by the
        server's cap looks the same when jobs land at the head so fast that the last job
        delivered is pushed to its end: past the documented rate (README, "What can go
        wrong"). Everywhere else the end is certain."""
        return self.shape == ENVELOPE or self.within_documented_rate


@dataclass
class ModelServer:
    """Serves a scenario's list; records which jobs stayed for the whole crawl."""

    scenario: Scenario
    items: list[int] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)
    requests: int = 0
    next_id: int = 10**6

    def __post_init__(self) -> None:
        self.items = list(range(self.scenario.total))
        self.rng = random.Random(self.scenario.seed)

    def serve(self, window: Window) -> RawPage:
        s = self.scenario
        turn = self.requests
        self.requests += 1
        limit = min(window.limit or DEFAULT_LIMIT, s.caps[turn % len(s.caps)])
        ids = self.items[window.offset : window.offset + limit]
        page = [{"id": i} for i in ids]
        end = window.offset + len(ids) >= len(self.items)
        if s.shape == ENVELOPE:
            result = RawPage(page, ENVELOPE, None if end else window.offset + len(ids))
        else:
            result = RawPage(page, BARE)
        for _ in range(s.inserts[turn % len(s.inserts)]):
            self.items.insert(0, self.next_id)
            self.next_id += 1
        for _ in range(s.removals[turn % len(s.removals)]):
            if self.items:
                self.removed.add(self.items.pop(self.rng.randrange(len(self.items))))
        return result

    def check(
        self, delivered: list[int], error: SievePaginationError | None, known: Any = ()
    ) -> None:
        """The promise, for what was delivered and how the listing ended.

        ``known`` are the ids a resumed listing started from (its checkpoint's): if all of them
        left the list, no reader can tell where it stood, and saying so is the promise kept.
        """
        assert len(delivered) == len(set(delivered)), "a job delivered twice"
        originals = [i for i in delivered if i < self.scenario.total]
        assert originals == sorted(originals), "originals out of server order"
        if error is not None:
            lost_all_known = bool(known) and set(known) <= self.removed
            assert not self.scenario.within_documented_rate or lost_all_known, (
                f"error within the rate: {error}"
            )
            return
        if not self.scenario.end_is_knowable:
            return
        stayed = set(range(self.scenario.total)) - self.removed
        missing = stayed - set(delivered)
        assert not missing, f"{len(missing)} jobs that stayed were not delivered"


def scenarios(max_total: int = 300) -> st.SearchStrategy[Scenario]:
    return st.builds(
        Scenario,
        total=st.integers(0, max_total),
        shape=st.sampled_from([ENVELOPE, BARE]),
        page_size=st.one_of(st.none(), st.integers(1, 40)),
        caps=st.lists(st.integers(2, 40), min_size=1, max_size=4),
        inserts=st.lists(st.integers(0, 6), min_size=1, max_size=3),
        removals=st.lists(st.integers(0, 2), min_size=1, max_size=3),
        seed=st.integers(0, 2**16),
    )


def request_bound(scenario: Scenario) -> int:
    """Far more requests than a correct walk needs: a walk past this is a loop.

    Past the documented rate the model's list grows for ever; the walk may then read what
    lands at the head a few times over before the progress guard ends it, so it is given more.
    """
    bound = 50 + 20 * (scenario.total + 1)
    return bound if scenario.within_documented_rate else 10 * bound


@settings(max_examples=CURSOR_EXAMPLES, deadline=None)
@given(scenario=scenarios())
def test_cursor_over_a_moving_list_keeps_the_promise(scenario: Scenario) -> None:
    """The sans-I/O cursor: complete and exactly once, or SievePaginationError; never a loop."""
    server = ModelServer(scenario)
    cursor = Cursor(page_size=scenario.page_size)
    delivered: list[int] = []
    error = None
    try:
        while (window := cursor.next_window()) is not None:
            assert server.requests < request_bound(scenario), "the walk does not end"
            delivered += [item["id"] for item in cursor.feed(window, server.serve(window)).items]
    except SievePaginationError as exc:
        error = exc
    server.check(delivered, error)


def paginator_for(
    server: ModelServer, scenario: Scenario, read_ahead: int, resume: Any = None
) -> tuple[AsyncPaginator[Any], TaskRegistry]:
    offset, last, recent = 0, None, []
    if resume is not None:
        offset, last, recent = resume["offset"], resume["last_id"], resume["recent"]

    async def fetch(window: Window) -> RawPage:
        await asyncio.sleep(0)  # let read-ahead requests interleave as they would on the wire
        assert server.requests < request_bound(scenario), "the walk does not end"
        return server.serve(window)

    tasks = TaskRegistry()
    cursor = Cursor(page_size=scenario.page_size, offset=offset, last_key=last, recent=recent)
    paginator: AsyncPaginator[Any] = AsyncPaginator(
        listing="/model",
        fetch=fetch,
        structure=lambda raw: raw["id"],
        cursor=cursor,
        read_ahead=read_ahead,
        tasks=tasks,
    )
    return paginator, tasks


@settings(max_examples=CURSOR_EXAMPLES // 5, deadline=None)
@given(
    scenario=scenarios(200),
    read_ahead=st.integers(0, 4),
    interrupt_after=st.one_of(st.none(), st.integers(0, 250)),
)
def test_paginator_with_read_ahead_and_resume_keeps_the_promise(
    scenario: Scenario, read_ahead: int, interrupt_after: int | None
) -> None:
    """The paginator, read ahead or not, stopped half way and resumed from its checkpoint."""
    scenario.read_ahead = read_ahead
    server = ModelServer(scenario)

    checkpoint: dict[str, Any] | None = None

    async def crawl() -> tuple[list[int], SievePaginationError | None]:
        nonlocal checkpoint
        delivered: list[int] = []
        try:
            paginator, tasks = paginator_for(server, scenario, read_ahead)
            async with paginator:
                async for job_id in paginator:
                    delivered.append(job_id)
                    if len(delivered) == interrupt_after:
                        checkpoint = paginator.checkpoint
                        break
            await tasks.aclose()
            if checkpoint is not None:
                paginator, tasks = paginator_for(server, scenario, read_ahead, checkpoint)
                async with paginator:
                    delivered += [job_id async for job_id in paginator]
                await tasks.aclose()
        except SievePaginationError as exc:
            await tasks.aclose()
            return delivered, exc
        return delivered, None

    delivered, error = asyncio.run(crawl())
    known = () if checkpoint is None else [checkpoint["last_id"], *checkpoint["recent"]]
    server.check(delivered, error, known)


def fake_sieve_cases() -> list[tuple[str, list[int], int, int, int]]:
    rng = random.Random(20261130)
    cases = []
    for seed in range(12):
        shape = ("envelope", "bare")[seed % 2]
        caps = [rng.randint(10, 20) for _ in range(rng.randint(1, 5))]
        cases.append((shape, caps, rng.randint(0, 4), rng.randint(0, 1), seed))
    return cases


@pytest.mark.anyio
@pytest.mark.parametrize(("shape", "caps", "inserted", "remove_every", "seed"), fake_sieve_cases())
async def test_over_http_through_fake_sieve(
    shape: str, caps: list[int], inserted: int, remove_every: int, seed: int
) -> None:
    """The same promise end to end: FakeSieve with a varying cap and a list that moves."""
    mutations = Mutations(
        insert_every=1 if inserted else 0,
        insert_count=max(1, inserted),
        remove_every=remove_every,
        remove="random",
        seed=seed,
    )
    async with FakeSieve(
        functions={"sieve/moving": 391}, shape=shape, page_cap=caps, seed=seed, mutations=mutations
    ) as fake:
        original = [job["id"] for job in fake.jobs("sieve/moving")]
        async with SieveClient(api_key=fake.api_key, base_url=fake.url) as sieve:
            jobs = sieve.list_function_jobs("sieve", "moving", page_size=20, read_ahead=seed % 3)
            delivered = [job.id async for job in jobs]
        assert len(delivered) == len(set(delivered)), "a job delivered twice"
        rank = {job_id: i for i, job_id in enumerate(original)}
        delivered_originals = [rank[i] for i in delivered if i in rank]
        assert delivered_originals == sorted(delivered_originals), "out of server order"
        stayed = set(original) - set(fake.removed)
        assert stayed <= set(delivered), f"{len(stayed - set(delivered))} jobs lost"
