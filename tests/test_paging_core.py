"""Properties of the sans-I/O paging core, driven against an in-memory listing."""

from __future__ import annotations

import contextlib
import gc
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve_async import SieveDecodeError, SievePaginationError
from sieve_async._paging import BARE, ENVELOPE, Cursor, RawPage, Window, decode_page

DEFAULT_LIMIT = 50


@dataclass
class MemoryListing:
    """A newest-first listing that can move between pages, served like FakeSieve would."""

    items: list[dict[str, Any]]
    shape: str
    cap: int | None = None
    insert_per_page: int = 0
    remove_per_page: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    requests: int = 0
    removed: set[int] = field(default_factory=set)
    next_new_id: int = 10**9

    def serve(self, window: Window) -> RawPage:
        self.requests += 1
        limit = window.limit or DEFAULT_LIMIT
        if self.cap is not None:
            limit = min(limit, self.cap)
        page = self.items[window.offset : window.offset + limit]
        end = window.offset + len(page) >= len(self.items)
        if self.shape == ENVELOPE:
            result = RawPage(list(page), ENVELOPE, None if end else window.offset + len(page))
        else:
            result = RawPage(list(page), BARE)
        self._move(window.offset + len(page))
        return result

    def _move(self, read_up_to: int) -> None:
        for _ in range(self.insert_per_page):
            self.items.insert(0, {"id": self.next_new_id})
            self.next_new_id += 1
        for _ in range(self.remove_per_page):
            if self.items:
                # a job already served leaves: every unread job moves to a lower offset
                index = self.rng.randrange(max(1, min(read_up_to, len(self.items))))
                self.removed.add(self.items.pop(index)["id"])


def walk(cursor: Cursor, listing: MemoryListing, bound: int) -> list[Any]:
    delivered = []
    while (window := cursor.next_window()) is not None:
        assert listing.requests < bound, "the walk must end within its request bound"
        accepted = cursor.feed(window, listing.serve(window))
        if not listing.insert_per_page and not listing.remove_per_page:
            # On a still list, the resume position after an item is its index plus one.
            ids = [item["id"] for item in accepted.items]
            assert list(accepted.positions) == [ids_index + 1 for ids_index in ids]
            assert accepted.keys == ids
        delivered += [item["id"] for item in accepted.items]
    assert cursor.requests == listing.requests
    return delivered


shapes = st.sampled_from([ENVELOPE, BARE])


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(0, 700),
    page_size=st.one_of(st.none(), st.integers(1, 120)),
    cap=st.one_of(st.none(), st.integers(1, 120)),
    shape=shapes,
    max_items=st.one_of(st.none(), st.integers(0, 800)),
)
def test_static_listing_every_item_once_in_order(
    total: int, page_size: int | None, cap: int | None, shape: str, max_items: int | None
) -> None:
    """For any length, page size, server cap and shape: each item once, in order, bounded."""
    ids = list(range(total))
    listing = MemoryListing([{"id": i} for i in ids], shape, cap)
    effective = min(page_size or DEFAULT_LIMIT, cap or 10**9)
    per_page = max(1, effective - 1)
    wanted = total if max_items is None else min(total, max_items)
    # (A server capping pages at one item costs a probe or two to tell from the end.)
    bound = math.ceil(wanted / per_page) + (3 if effective > 1 else 6)
    delivered = walk(Cursor(page_size=page_size, max_items=max_items), listing, bound)
    assert delivered == ids[:wanted]


@settings(max_examples=150, deadline=None)
@given(
    total=st.integers(0, 600),
    page_size=st.integers(10, 100),
    inserted=st.integers(1, 50),
    shape=shapes,
)
def test_insertions_at_head_deliver_every_original_once(
    total: int, page_size: int, inserted: int, shape: str
) -> None:
    """Jobs landing at the head after every page shift offsets up; originals arrive exactly once.

    (A reader gains page size - 1 - inserted items a page, so insertions stay below half a page.)
    """
    inserted = min(inserted, page_size // 2 - 1)
    listing = MemoryListing([{"id": i} for i in range(total)], shape, insert_per_page=inserted)
    delivered = walk(Cursor(page_size=page_size), listing, 10 * (total // page_size + 3))
    assert len(delivered) == len(set(delivered)), "no job twice"
    assert [i for i in delivered if i < total] == list(range(total))


@settings(max_examples=150, deadline=None)
@given(
    total=st.integers(0, 600),
    page_size=st.integers(4, 100),
    removed=st.integers(1, 2),
    shape=shapes,
    seed=st.integers(0, 2**16),
)
def test_removals_behind_the_reader_skip_nothing(
    total: int, page_size: int, removed: int, shape: str, seed: int
) -> None:
    """Jobs leaving behind the reader shift offsets down; none that stays is skipped or repeated."""
    listing = MemoryListing(
        [{"id": i} for i in range(total)],
        shape,
        remove_per_page=removed,
        rng=random.Random(seed),
    )
    delivered: list[Any] = []
    try:
        delivered = walk(Cursor(page_size=page_size), listing, 10 * (total // 2 + 5))
    except SievePaginationError:
        # Half a small page leaving per request can take every recently delivered job away
        # again and again: the listing then says so rather than read on blind.
        assert page_size < 8
        return
    assert len(delivered) == len(set(delivered)), "no job twice"
    assert set(range(total)) - listing.removed <= set(delivered), "no remaining job skipped"
    assert delivered == sorted(delivered), "server order kept"


@st.composite
def still_listings(draw: st.DrawFn) -> tuple[int, int, int | None]:
    """A page size, a total of at least two full pages, and a max_items above one page."""
    page_size = draw(st.integers(2, 60))
    total = draw(st.integers(2 * page_size, 500))
    max_items = draw(st.one_of(st.none(), st.integers(page_size + 1, total + 50)))
    return page_size, total, max_items


@settings(max_examples=150, deadline=None)
@given(listing_shape=still_listings(), shape=shapes, ahead=st.integers(1, 8))
def test_plan_predicts_the_windows_of_a_still_listing(
    listing_shape: tuple[int, int, int | None], shape: str, ahead: int
) -> None:
    """plan(k) lists the windows the cursor will ask next while pages come back full."""
    page_size, total, max_items = listing_shape
    listing = MemoryListing([{"id": i} for i in range(total)], shape)
    cursor = Cursor(page_size=page_size, max_items=max_items)
    plans: list[list[Window]] = []
    asked: list[Window] = []
    full: list[bool] = []
    while (window := cursor.next_window()) is not None:
        plans.append(cursor.plan(ahead + 1))
        asked.append(window)
        page = listing.serve(window)
        full.append(len(page.items) == window.limit)
        cursor.feed(window, page)
    # More than a page is wanted, so the first plan looks past its first window.
    assert len(plans[0]) >= 2
    checked = 0
    for i, plan in enumerate(plans):
        assert plan[0] == asked[i]
        for j in range(1, len(plan)):
            if i + j >= len(asked) or not all(full[i : i + j]):
                break
            assert plan[j] == asked[i + j]
            checked += 1
    assert checked, "at least one planned window was compared with the one asked"


def test_resume_from_position_and_last_id() -> None:
    """A cursor made from a checkpoint's offset and last id continues right after it."""
    listing = MemoryListing([{"id": i} for i in range(300)], ENVELOPE)
    cursor = Cursor(page_size=40, offset=137, last_key=136)
    assert walk(cursor, listing, 20) == list(range(137, 300))


def test_decode_both_shapes_and_end_markers() -> None:
    """Envelope end markers -1, null and absent all end; a bare array never says it ends."""
    assert decode_page(b'[{"id": 1}]') == RawPage([{"id": 1}], BARE)
    assert decode_page(b'{"data": [], "next_offset": -1}').is_end
    assert decode_page(b'{"data": [], "next_offset": null}').is_end
    assert decode_page(b'{"data": []}').is_end
    assert decode_page(b'{"data": [{"id": 1}], "next_offset": 5}').next_offset == 5
    assert decode_page(b'{"data": [{"id": 1}], "next_offset": 0}') == RawPage(
        [{"id": 1}], ENVELOPE, 0
    )
    assert decode_page(b'{"data": [{"id": 1}]}') == RawPage([{"id": 1}], ENVELOPE, None)
    assert not decode_page(b"[]").is_end


@pytest.mark.parametrize(
    ("body", "problem", "retryable"),
    [
        (b"<html>", "the body is not valid JSON", True),
        (b'{"data": 3}', "expected a JSON array or an object with a 'data' array", False),
        (b'{"items": []}', "expected a JSON array or an object with a 'data' array", False),
        (b'"text"', "expected a JSON array or an object with a 'data' array", False),
        (b'{"data": [], "next_offset": "x"}', "'next_offset' is 'x', not an integer", False),
    ],
)
def test_decode_rejects_other_bodies(body: bytes, problem: str, retryable: bool) -> None:
    """Anything but the two listing shapes is a SieveDecodeError naming the status and the
    problem and quoting the body; only a body that is not JSON is worth another attempt."""
    with pytest.raises(SieveDecodeError) as caught:
        decode_page(body, 203)
    assert caught.value.body_start == body[:200]
    assert caught.value.status == 203
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(f"HTTP 203: {problem}")


def test_next_offset_going_backwards_raises() -> None:
    """A next_offset at or before the requested offset would loop: SievePaginationError."""
    cursor = Cursor(page_size=10)
    window = cursor.next_window()
    assert window is not None
    cursor.feed(window, RawPage([{"id": i} for i in range(10)], ENVELOPE, 10))
    window = cursor.next_window()
    assert window is not None
    with pytest.raises(SievePaginationError):
        cursor.feed(window, RawPage([{"id": 9}, {"id": 10}], ENVELOPE, window.offset))


def test_item_without_id_is_decode_error() -> None:
    """An item without an id cannot be tracked exactly once: SieveDecodeError."""
    cursor = Cursor(page_size=10)
    with pytest.raises(SieveDecodeError, match="no 'id'"):
        cursor.feed(Window(0, 10), RawPage([{"name": "x"}], BARE))


@pytest.mark.parametrize("bad", [[1], {"a": 1}, None, 1.5])
def test_item_with_an_id_of_another_type_is_decode_error(bad: object) -> None:
    """An id that is neither a string nor an integer is named (as the server sent it, in JSON)
    in the error, after good ones."""
    cursor = Cursor(page_size=10)
    sent = orjson.dumps(bad).decode()
    with pytest.raises(SieveDecodeError, match=re.escape(f"a listed item's 'id' is {sent},")):
        cursor.feed(Window(0, 10), RawPage([{"id": "fine"}, {"id": bad}], BARE))


@pytest.mark.parametrize("body", [b'[{"id": 1}, [2, 3]]', b"[not json"])
@pytest.mark.parametrize("collector_on", [True, False])
def test_decoding_leaves_the_garbage_collector_as_it_found_it(
    body: bytes, collector_on: bool
) -> None:
    """Decoding holds the collector off only for the call, and never turns on a disabled one."""
    was = gc.isenabled()
    try:
        if collector_on:
            gc.enable()
        else:
            gc.disable()
        with contextlib.suppress(SieveDecodeError):
            decode_page(body)
        assert gc.isenabled() is collector_on
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_max_items_holds_when_the_server_sends_more_than_asked() -> None:
    """A server ignoring ``limit`` cannot push a listing past ``max_items``, page after page."""
    cursor = Cursor(page_size=3, max_items=5)
    everything = [{"id": i} for i in range(10)]
    delivered = []
    while (window := cursor.next_window()) is not None:
        page = RawPage(everything[window.offset :], ENVELOPE, None)
        delivered += [item["id"] for item in cursor.feed(window, page).items]
        if len(delivered) == 3:
            # Hand the second page an id twice, so that it takes the de-duplicating path.
            everything.insert(4, {"id": 4})
    assert delivered == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("shape", [ENVELOPE, BARE])
def test_progress_guard_gives_up_after_its_documented_count(shape: str) -> None:
    """The same page at every offset: the first request delivers, eight more that bring
    nothing are borne, and the ninth raises (ten requests in all)."""
    page = [{"id": i} for i in range(10)]
    cursor = Cursor(page_size=10)

    def serve_same_page_forever() -> None:
        while (window := cursor.next_window()) is not None:
            next_offset = window.offset + 10 if shape == ENVELOPE else None
            cursor.feed(window, RawPage(list(page), shape, next_offset))

    with pytest.raises(SievePaginationError, match="9 requests in a row brought no new item"):
        serve_same_page_forever()
    assert cursor.requests == 10
