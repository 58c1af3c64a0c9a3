"""Properties of the sans-I/O paging core, driven against an in-memory listing."""

from __future__ import annotations

import contextlib
import gc
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve_async import SieveDecodeError, SievePaginationError
from sieve_async._paging import (
    BARE,
    ENVELOPE,
    Cursor,
    RawPage,
    Window,
    decode_page,
    function_key,
    id_key,
    is_id,
)

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


def test_undecodable_body_error_quotes_its_first_200_bytes_and_defaults_to_status_200() -> None:
    """A long body that is not JSON: the message names status 200 and quotes 200 bytes."""
    body = b"<html>" + b"x" * 300
    with pytest.raises(SieveDecodeError) as caught:
        decode_page(body)
    assert caught.value.status == 200
    assert caught.value.body_start == body[:200]
    assert caught.value.retryable is True
    message = str(caught.value)
    assert message.startswith("HTTP 200: the body is not valid JSON (")
    assert message.endswith(f"); the body starts with {body[:200]!r}")


@pytest.mark.parametrize("raw", [b"true", b"false", b"1.5", b'"5"'])
def test_next_offset_of_another_json_type_is_a_decode_error(raw: bytes) -> None:
    """next_offset true (a bool is an int to Python), 1.5 or "5": a SieveDecodeError naming it."""
    body = b'{"data": [], "next_offset": ' + raw + b"}"
    shown = repr(orjson.loads(raw))
    with pytest.raises(SieveDecodeError) as caught:
        decode_page(body, 200)
    assert str(caught.value) == (
        f"HTTP 200: 'next_offset' is {shown}, not an integer; the body starts with {body!r}"
    )
    assert caught.value.retryable is False


def test_next_offset_below_minus_one_is_a_pagination_error_saying_why() -> None:
    """Only -1 marks the end; -2 says nothing about what follows."""
    with pytest.raises(SievePaginationError) as caught:
        decode_page(b'{"data": [{"id": 1}], "next_offset": -2}')
    assert str(caught.value) == (
        "the server sent next_offset -2; only -1 marks the end of a listing, so whether more "
        "follows is unknown"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),
        ("", True),
        (0, True),
        (-7, True),
        (True, False),
        (False, False),
        (1.5, False),
        (None, False),
        ([1], False),
    ],
)
def test_is_id_takes_strings_and_integers_but_not_booleans(value: Any, expected: bool) -> None:
    assert is_id(value) is expected


def test_item_without_id_error_quotes_the_item_and_carries_it() -> None:
    """The item is quoted (its first 200 bytes of JSON) in the message and as body_start."""
    item = {"name": "x" * 300}
    quoted = orjson.dumps(item)[:200]
    with pytest.raises(SieveDecodeError) as caught:
        Cursor(page_size=10).feed(Window(0, 10), RawPage([{"id": 1}, item], BARE))
    assert str(caught.value) == f"a listed item has no 'id': {quoted!r}"
    assert caught.value.body_start == quoted


@pytest.mark.parametrize("item", [["id"], "id", 7])
def test_item_that_is_not_an_object_is_a_decode_error(item: Any) -> None:
    with pytest.raises(SieveDecodeError, match=r"^a listed item has no 'id': b'"):
        id_key(item)


def test_id_of_another_type_error_says_what_an_id_may_be() -> None:
    with pytest.raises(SieveDecodeError) as caught:
        id_key({"id": 2.5})
    assert str(caught.value) == "a listed item's 'id' is 2.5, not a string or an integer"


def test_functions_are_keyed_by_owner_and_name() -> None:
    """A function listing is keyed by owner_name/name; one without them is a decode error."""
    functions = [{"owner_name": "o", "name": f"f{i}"} for i in range(3)]
    cursor = Cursor(page_size=10, key=function_key)
    accepted = cursor.feed(Window(0, 10), RawPage(functions, ENVELOPE, None))
    assert accepted.keys == ["o/f0", "o/f1", "o/f2"]
    assert cursor.done
    assert function_key({"owner_name": "a", "name": "b", "id": 3}) == "a/b"
    with pytest.raises(SieveDecodeError) as caught:
        function_key({"name": "b"})
    assert str(caught.value) == (
        "a listed function lacks 'owner_name' or 'name': " + repr(b'{"name":"b"}')
    )
    with pytest.raises(SieveDecodeError, match="lacks 'owner_name' or 'name'"):
        function_key({"owner_name": "a"})


def drive(cursor: Cursor, answer: Callable[[Window], RawPage], asked: list[int]) -> None:
    """Feed the cursor ``answer(window)`` for each window it asks, noting the offsets asked."""
    while (window := cursor.next_window()) is not None:
        asked.append(window.offset)
        cursor.feed(window, answer(window))


def serve_fresh_items_forever(cursor: Cursor, shape: str, asked: list[Window]) -> None:
    """Answer every window with a full page of ids never seen before, noting each window."""
    fresh = iter(range(10**6))
    while (window := cursor.next_window()) is not None:
        asked.append(window)
        items = [{"id": f"n{next(fresh)}"} for _ in range(window.limit or 10)]
        next_offset = window.offset + len(items) if shape == ENVELOPE else None
        cursor.feed(window, RawPage(items, shape, next_offset))


@pytest.mark.parametrize("shape", [ENVELOPE, BARE])
def test_search_back_doubles_its_step_then_scans_and_gives_up_after_idle_bound(
    shape: str,
) -> None:
    """Resuming at 40 with two recently delivered ids that no page shows: the cursor steps back
    by 1, 2, 4... items to the head, scans forward from there a page at a time, and gives up
    on the request that makes 16 + 2 per recent id (20) in a row without a new item, naming
    the last window."""
    cursor = Cursor(page_size=10, offset=40, last_key="x", recent=["y"])
    asked: list[Window] = []
    with pytest.raises(SievePaginationError) as caught:
        serve_fresh_items_forever(cursor, shape, asked)
    assert [w.offset for w in asked] == [39, 38, 36, 32, 24, 8, 0, *range(10, 150, 10)]
    # The overlapping window asks for the overlap item on top; searching and scanning do not.
    assert [w.limit for w in asked] == [11] + [10] * 20
    assert cursor.requests == 21
    assert cursor.accepted == 0
    assert cursor.recent_keys(5) == ["y", "x"]
    answered = "next_offset 150" if shape == ENVELOPE else "10 items"
    assert str(caught.value) == (
        f"21 requests in a row brought no new item (the last: offset 140 answered with "
        f"{answered}, all delivered before). The server repeats pages, or items land at the "
        "head faster than pages are read (try a page_size above 10)"
    )


def test_idle_guard_message_without_a_page_size_suggests_none() -> None:
    cursor = Cursor(offset=40, last_key="x", recent=["y"])
    asked: list[Window] = []
    with pytest.raises(SievePaginationError) as caught:
        serve_fresh_items_forever(cursor, BARE, asked)
    assert str(caught.value).endswith("faster than pages are read")
    assert cursor.requests == 21
    assert {w.limit for w in asked} == {None}


def test_request_allowance_is_64_plus_four_per_item_delivered() -> None:
    """Ten items delivered, then pages that never show one again: with 200 other recent ids the
    idle bound is far off, so the request allowance (64 + 4 x 10) ends it at request 105."""
    cursor = Cursor(page_size=10, recent=[f"r{i}" for i in range(200)])
    with pytest.raises(SievePaginationError) as caught:
        serve_fresh_items_forever(cursor, BARE, [])
    assert cursor.accepted == 10
    assert cursor.requests == 105
    assert str(caught.value) == (
        "105 requests brought only 10 items; the server's pages do not add up to a listing"
    )


def test_a_listing_seen_whole_without_a_delivered_id_loses_its_place() -> None:
    """Resuming after ids that are all gone: the search reaches the head, the scan reaches a
    short last page, and the error says how many delivered ids it looked for."""
    listing = [{"id": f"n{i}"} for i in range(25)]
    cursor = Cursor(page_size=10, offset=12, last_key="x", recent=["y"])
    asked: list[int] = []
    with pytest.raises(SievePaginationError) as caught:
        drive(cursor, lambda w: RawPage(listing[w.offset : w.offset + 10], BARE), asked)
    assert asked == [11, 10, 8, 4, 0, 10, 20]
    assert str(caught.value) == (
        "lost our place in the listing: none of the 2 jobs delivered last is in it any more "
        "(they all left it while it was read), so what it holds now cannot be placed after "
        "them; list it again from the start"
    )


@pytest.mark.parametrize(
    ("page_size", "kept"),
    [(400, [400, 800, 1200, 1600, 1600, 1600]), (None, [400, 800, 1200, 1600, 2000, 2000])],
)
def test_recent_ids_are_forgotten_a_page_at_a_time_beyond_four_pages(
    page_size: int | None, kept: list[int]
) -> None:
    """Pages of 400 new ids after the overlap item: the cursor remembers whole pages as long as
    dropping the oldest would leave fewer than four pages' worth: four times the page size, or
    without one, the longest page seen (401 here, so the fifth page is kept as well). A listing
    then vanishing is reported with the count remembered."""
    cursor = Cursor(page_size=page_size)
    remembered = []
    for n in range(6):
        page = [{"id": i} for i in range(400 * n - (n > 0), 400 * (n + 1))]
        window = cursor.next_window()
        assert window == Window(page[0]["id"], page_size and page_size + (n > 0))
        cursor.feed(window, RawPage(page, BARE))
        remembered.append(len(cursor.recent_keys(10**6)))
    assert remembered == kept
    assert cursor.recent_keys(10**6) == list(range(2400 - kept[-1], 2400))
    strangers = RawPage([{"id": f"s{i}"} for i in range(3)], BARE)
    expected = f"^lost our place in the listing: none of the {kept[-1]} jobs delivered last"
    with pytest.raises(SievePaginationError, match=expected):
        drive(cursor, lambda w: strangers, [])


def test_recent_keys_returns_the_last_ones_across_pages() -> None:
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage([{"id": i} for i in range(10)], BARE))
    cursor.feed(Window(9, 11), RawPage([{"id": i} for i in range(9, 20)], BARE))
    assert cursor.recent_keys(0) == []
    assert cursor.recent_keys(-3) == []
    assert cursor.recent_keys(1) == [19]
    assert cursor.recent_keys(10) == list(range(10, 20))
    assert cursor.recent_keys(15) == list(range(5, 20))
    assert cursor.recent_keys(20) == list(range(20))
    assert cursor.recent_keys(50) == list(range(20))


def test_first_windows_at_the_head_and_when_resuming_near_it() -> None:
    """The overlap item, asked for on top of the page, applies only when resuming past the
    head."""
    assert Cursor(page_size=1).next_window() == Window(0, 1)
    assert Cursor(page_size=1, offset=0, last_key="x").next_window() == Window(0, 1)
    assert Cursor(page_size=1, offset=1, last_key="x").next_window() == Window(0, 2)
    assert Cursor(page_size=3, offset=1, last_key="x").next_window() == Window(0, 4)
    assert Cursor(offset=1, last_key="x").next_window() == Window(0, None)
    assert Cursor(offset=5, last_key="x", max_items=3).next_window() == Window(4, 4)
    assert Cursor(page_size=2, offset=5, max_items=3).next_window() == Window(5, 2)
    assert Cursor(max_items=0).next_window() is None
    assert Cursor(max_items=0).plan(3) == []


def test_plan_follows_full_pages_up_to_max_items() -> None:
    """25 items of pages of 10 (and the overlap item): three windows, the last asking only for
    what is still wanted."""
    cursor = Cursor(page_size=10, max_items=25)
    assert cursor.plan(5) == [Window(0, 10), Window(9, 11), Window(19, 6)]
    assert cursor.plan(2) == [Window(0, 10), Window(9, 11)]
    assert cursor.plan(1) == [Window(0, 10)]
    cursor = Cursor(page_size=10, max_items=19)
    assert cursor.plan(5) == [Window(0, 10), Window(9, 10)]


def test_plan_without_a_page_size_waits_for_the_first_page() -> None:
    """With the server choosing the page length, plans look ahead only once a page showed it."""
    cursor = Cursor()
    assert cursor.plan(3) == [Window(0, None)]
    cursor.feed(Window(0, None), RawPage([{"id": i} for i in range(10)], ENVELOPE, 10))
    assert cursor.plan(3) == [Window(9, None), Window(18, None), Window(27, None)]


def test_plan_uses_the_cap_the_server_showed() -> None:
    """Pages of 100 asked, 10 sent while more follows: the plan assumes pages of 10."""
    cursor = Cursor(page_size=100)
    cursor.feed(Window(0, 100), RawPage([{"id": i} for i in range(10)], ENVELOPE, 10))
    assert cursor.plan(3) == [Window(9, 101), Window(18, 101), Window(27, 101)]
    cursor = Cursor(page_size=100, max_items=25)
    cursor.feed(Window(0, 100), RawPage([{"id": i} for i in range(10)], ENVELOPE, 10))
    assert cursor.plan(9) == [Window(9, 16), Window(18, 7)]


def test_plan_of_single_item_pages_is_one_window() -> None:
    """Pages of one item cannot be planned past the first: the next window overlaps it whole."""
    cursor = Cursor(page_size=1)
    assert cursor.plan(3) == [Window(0, 1)]


def test_plan_is_one_window_while_searching_or_probing() -> None:
    """Searching back for a delivered item, or probing at our position, plans nothing further."""
    cursor = Cursor(page_size=10, offset=40, last_key="x")
    cursor.feed(Window(39, 10), RawPage([{"id": f"n{i}"} for i in range(10)], BARE))
    assert cursor.plan(3) == [Window(38, 10)]
    cursor = Cursor(page_size=2, offset=40, last_key="x")
    cursor.feed(Window(39, 2), RawPage([{"id": f"n{i}"} for i in range(2)], BARE))
    assert cursor.plan(3) == [Window(38, 2)]
    # Only the overlap item came back while more follows: probe at our position.
    cursor = Cursor(page_size=10, offset=40, last_key="x")
    cursor.feed(Window(39, 10), RawPage([{"id": "x"}], ENVELOPE, 40))
    assert cursor.plan(3) == [Window(40, 10)]


def progress_error(count: int, offset: int, answered: str) -> str:
    return (
        f"{count} requests in a row brought no new item (the last: offset {offset} answered with "
        f"{answered}, all delivered before). The server repeats pages, or items land at the "
        "head faster than pages are read (try a page_size above 10)"
    )


@pytest.mark.parametrize("found", [2, 10])
def test_probe_finding_only_strangers_stalls_until_the_guard_gives_up(found: int) -> None:
    """Only the overlap item comes back, so the cursor probes at its position; the probe finds
    two or more ids it cannot place after the last delivered one, and the overlapping window
    shows the overlap item alone again: after the first, every request counts as a stall, and
    the ninth stall (the tenth request) raises."""
    cursor = Cursor(page_size=10, offset=40, last_key="x")
    strangers = [{"id": f"s{i}"} for i in range(found)]

    def answer(window: Window) -> RawPage:
        if window.offset == 39:
            return RawPage([{"id": "x"}], ENVELOPE, 40)
        return RawPage(strangers, ENVELOPE, window.offset + 10)

    asked: list[int] = []
    with pytest.raises(SievePaginationError) as caught:
        drive(cursor, answer, asked)
    assert asked == [39, 40] * 5
    assert cursor.accepted == 0
    assert str(caught.value) == progress_error(10, 40, "next_offset 50")


def test_empty_pages_at_the_head_after_searching_back_stall() -> None:
    """The search for a delivered id reaches the head, where empty pages that say more follows
    come back: each is a stall, and the ninth raises."""
    cursor = Cursor(page_size=10, offset=5, last_key="x")

    def answer(window: Window) -> RawPage:
        items = [{"id": f"s{window.offset}-{i}"} for i in range(10 if window.offset else 0)]
        return RawPage(items, ENVELOPE, window.offset + 10)

    asked: list[int] = []
    with pytest.raises(SievePaginationError) as caught:
        drive(cursor, answer, asked)
    assert asked == [4, 3, 1, *[0] * 9]
    assert str(caught.value) == progress_error(12, 0, "next_offset 10")


def test_finding_the_anchor_again_after_each_search_is_not_a_stall() -> None:
    """Each search back finds the last delivered id again (nothing new after it) and the window
    after it shows strangers again: the requests get closer and never stall, so only the idle
    bound (16 + 2 for the one recent id) ends it, checked at the 20th request (a step back only
    counts towards the request allowance)."""
    cursor = Cursor(page_size=10, offset=5, last_key="x")

    def answer(window: Window) -> RawPage:
        if window.offset == 3:
            return RawPage([{"id": "q"}, {"id": "x"}], ENVELOPE, 5)
        return RawPage([{"id": f"s{i}"} for i in range(10)], ENVELOPE, window.offset + 10)

    asked: list[int] = []
    with pytest.raises(SievePaginationError) as caught:
        drive(cursor, answer, asked)
    assert asked == [4, 3] * 10
    assert str(caught.value) == progress_error(20, 3, "next_offset 5")
    assert cursor.accepted == 0


@pytest.mark.parametrize(
    ("second_page", "delivered", "then"),
    [
        # The last delivered id places the page even though an earlier one follows it.
        (["c", "d", "a"], ["d"], Window(4, 4)),
        # The last delivered id left; an earlier one at the start of the page places it.
        (["b", "d", "e"], ["d", "e"], Window(4, 4)),
        # ... or one at its end: nothing new, and the next window follows the page.
        (["n1", "n2", "b"], [], Window(4, 4)),
        # ... or one in its middle.
        (["x", "b", "n"], ["n"], Window(4, 4)),
        # None at all: search back by one, asking for a page without the overlap on top.
        (["x", "y", "z"], [], Window(1, 3)),
    ],
)
def test_a_page_is_placed_by_the_last_delivered_id_else_by_any_recent_one(
    second_page: list[str], delivered: list[str], then: Window
) -> None:
    cursor = Cursor(page_size=3)
    cursor.feed(Window(0, 3), RawPage([{"id": i} for i in "abc"], BARE))
    assert cursor.next_window() == Window(2, 4)
    accepted = cursor.feed(Window(2, 4), RawPage([{"id": i} for i in second_page], BARE))
    assert accepted.keys == delivered
    assert cursor.next_window() == then


def test_envelope_end_markers_keep_the_page_items() -> None:
    page = [{"id": 1}, {"id": 2}]
    for marker in (b', "next_offset": null', b', "next_offset": -1', b""):
        body = b'{"data": [{"id": 1}, {"id": 2}]' + marker + b"}"
        assert decode_page(body) == RawPage(page, ENVELOPE, None)


def test_deeply_nested_job_fields_decode() -> None:
    """A job holding JSON nested 1000 deep is read (the fast decoder takes it)."""
    nested = b"[" * 1000 + b"]" * 1000
    page = decode_page(b'[{"id": 1, "outputs": ' + nested + b"}]")
    assert page.items[0]["id"] == 1


def ids(*keys: Any) -> list[dict[str, Any]]:
    return [{"id": key} for key in keys]


def test_bare_short_page_ending_at_the_last_item_read_ends_at_once() -> None:
    """A job landed at the head, so the overlapping window shows the two items before our
    position and nothing after them: asked for just before our position, that is the end."""
    cursor = Cursor(page_size=5)
    assert cursor.feed(Window(0, 5), RawPage(ids(0, 1, 2, 3, 4), BARE)).keys == [0, 1, 2, 3, 4]
    assert cursor.next_window() == Window(4, 6)
    assert cursor.feed(Window(4, 6), RawPage(ids(4, 5, 6, 7), BARE)).keys == [5, 6, 7]
    assert cursor.next_window() == Window(7, 6)
    assert cursor.feed(Window(7, 6), RawPage(ids(6, 7), BARE)).keys == []
    assert cursor.done
    assert cursor.requests == 3


def test_scan_forward_finds_the_last_delivered_item_and_reads_on_from_it() -> None:
    """Resuming after id 4 when 30 jobs landed at the head: the search reaches the head, the
    scan steps forward a page at a time to where id 4 now stands, and the reading goes on from
    there with overlapping windows, every later job once."""
    listing = [f"n{i}" for i in range(30)] + list(range(50))
    cursor = Cursor(page_size=10, offset=5, last_key=4)
    asked: list[int] = []
    delivered: list[Any] = []

    def answer(window: Window) -> RawPage:
        return RawPage(ids(*listing[window.offset : window.offset + 10]), BARE)

    while (window := cursor.next_window()) is not None:
        asked.append(window.offset)
        delivered += cursor.feed(window, answer(window)).keys
    assert delivered == list(range(5, 50))
    assert asked == [4, 3, 1, 0, 10, 20, 30, 39, 48, 57, 66, 75, 79]


def test_every_search_back_starts_again_with_a_step_of_one() -> None:
    """Two separate searches for the last delivered item: each steps back by one first."""
    cursor = Cursor(page_size=10, offset=40, last_key="x")

    def answer(window: Window) -> RawPage:
        if window.offset == 38:
            return RawPage(ids("q", "x", *range(8)), ENVELOPE, 48)
        if window.offset == 47:
            return RawPage(ids(*range(7, 17)), ENVELOPE, 57)
        if window.offset == 55:
            return RawPage(ids(16, 17, 18), ENVELOPE, None)
        strangers = ids(*(f"s{window.offset}-{i}" for i in range(10)))
        return RawPage(strangers, ENVELOPE, window.offset + 10)

    asked: list[int] = []
    delivered: list[Any] = []
    while (window := cursor.next_window()) is not None:
        asked.append(window.offset)
        delivered += cursor.feed(window, answer(window)).keys
    assert asked == [39, 38, 47, 56, 55]
    assert delivered == list(range(19))


def test_envelope_cap_is_the_shortest_page_after_which_more_followed() -> None:
    """Asked for 10, sent 5 then 7 while more follows: the plan assumes pages of 5."""
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(*range(5)), ENVELOPE, 5))
    cursor.feed(Window(4, 11), RawPage(ids(*range(4, 11)), ENVELOPE, 11))
    assert cursor.plan(3) == [Window(10, 11), Window(14, 11), Window(18, 11)]
    # A page of two counts as a cap; one of a single item does not (see the probe).
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(0, 1), ENVELOPE, 2))
    assert cursor.plan(3) == [Window(1, 11), Window(2, 11), Window(3, 11)]


@pytest.mark.parametrize("length", [2, 5])
def test_bare_cap_is_learnt_once_more_items_follow_a_short_page(length: int) -> None:
    """Bare pages of ``length`` when 10 are asked: after the second page brings new items the
    first was a cap, not the end, and plans assume pages of that length."""
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(*range(length)), BARE))
    assert cursor.plan(3) == [
        Window(length - 1, 11),
        Window(length - 1 + 10, 11),
        Window(length - 1 + 20, 11),
    ]
    second = cursor.feed(
        Window(length - 1, 11), RawPage(ids(*range(length - 1, 2 * length - 1)), BARE)
    )
    assert second.keys == list(range(length, 2 * length - 1))
    step = length - 1
    start = 2 * length - 2
    assert cursor.plan(3) == [
        Window(start, 11),
        Window(start + step, 11),
        Window(start + 2 * step, 11),
    ]


def test_a_page_repeating_an_id_delivers_only_what_follows_the_anchor_once() -> None:
    """[n, c, d, d, e] after a, b, c: n stands before the anchor and is not delivered, d once,
    each with the resume position after it."""
    cursor = Cursor(page_size=3)
    cursor.feed(Window(0, 3), RawPage(ids("a", "b", "c"), BARE))
    accepted = cursor.feed(Window(2, 5), RawPage(ids("n", "c", "d", "d", "e"), BARE))
    assert accepted.keys == ["d", "e"]
    assert [item["id"] for item in accepted.items] == ["d", "e"]
    assert list(accepted.positions) == [5, 7]


def test_max_items_holds_when_a_later_page_brings_more_than_asked() -> None:
    """Three delivered of five, then a page of eight new items: two are delivered."""
    cursor = Cursor(page_size=3, max_items=5)
    assert cursor.feed(Window(0, 3), RawPage(ids(0, 1, 2), BARE)).keys == [0, 1, 2]
    assert cursor.next_window() == Window(2, 3)
    accepted = cursor.feed(Window(2, 3), RawPage(ids(*range(2, 10)), BARE))
    assert accepted.keys == [3, 4]
    assert cursor.done
    assert cursor.accepted == 5


@pytest.mark.parametrize("landed_after", [1, 2])
def test_bare_server_default_of_two_items_is_not_taken_for_the_end(landed_after: int) -> None:
    """No page size, a server sending two items a page, a job landing at the head after the
    first or second request: the page ending at the last item read is as long as the server's
    pages, so it is not the end."""
    listing = [0, 1, 2, 3]
    cursor = Cursor()
    delivered: list[Any] = []
    while (window := cursor.next_window()) is not None:
        delivered += cursor.feed(window, RawPage(ids(*listing[window.offset :][:2]), BARE)).keys
        if cursor.requests == landed_after:
            listing.insert(0, "new")
    assert delivered == [0, 1, 2, 3]


def test_plan_without_a_page_size_assumes_the_longest_page_seen() -> None:
    cursor = Cursor()
    cursor.feed(Window(0, None), RawPage(ids(*range(5)), ENVELOPE, 5))
    cursor.feed(Window(4, None), RawPage(ids(*range(4, 12)), ENVELOPE, 12))
    assert cursor.plan(3) == [Window(11, None), Window(18, None), Window(25, None)]


@pytest.mark.parametrize("shape", [ENVELOPE, BARE])
def test_resuming_a_listing_that_became_empty_ends_at_the_head(shape: str) -> None:
    """Every job left: the search reaches the head, finds it empty, and the listing ends."""
    cursor = Cursor(page_size=10, offset=5, last_key="x")
    asked: list[int] = []
    drive(cursor, lambda w: RawPage([], shape, None), asked)
    assert asked == [4, 3, 1, 0]
    assert cursor.done


def test_probe_showing_the_last_item_then_new_ones_reads_on() -> None:
    """A server sending one item a page; the probe at our position comes back with the last
    delivered item (a job landed at the head) and a new one: the new one is delivered and the
    listing goes on."""
    cursor = Cursor(page_size=10)
    assert cursor.feed(Window(0, 10), RawPage(ids(0), BARE)).keys == [0]
    assert cursor.next_window() == Window(0, 11)
    assert cursor.feed(Window(0, 11), RawPage(ids(0), BARE)).keys == []
    assert cursor.next_window() == Window(1, 10)
    assert cursor.feed(Window(1, 10), RawPage(ids(0, 1), BARE)).keys == [1]
    assert not cursor.done
    assert cursor.next_window() == Window(3, 10)


def test_bare_page_as_long_as_the_cap_ending_at_the_last_item_is_not_the_end() -> None:
    """Pages capped at 5 of 10 asked; four jobs land at the head, so the next window shows the
    five items up to the last one read: a page the cap may have cut, so reading goes on."""
    listing = list(range(21))
    cursor = Cursor(page_size=10)
    delivered: list[Any] = []
    while (window := cursor.next_window()) is not None:
        page = listing[window.offset : window.offset + min(5, window.limit or 5)]
        delivered += cursor.feed(window, RawPage(ids(*page), BARE)).keys
        if cursor.requests == 2:
            listing[:0] = ["n1", "n2", "n3", "n4"]
    assert delivered == list(range(21))


def test_bare_single_item_page_ends_a_listing_whose_pages_held_two() -> None:
    """Pages of two then one at the last item read: a server sending longer pages shows the
    end; no probe follows."""
    cursor = Cursor(page_size=10)
    assert cursor.feed(Window(0, 10), RawPage(ids(0, 1), BARE)).keys == [0, 1]
    assert cursor.feed(Window(1, 10), RawPage(ids(1), BARE)).keys == []
    assert cursor.done


def test_single_recent_item_at_the_head_without_a_last_key_plans_ahead() -> None:
    """Resuming with recent ids but no last one: a page of one recent item is no reason to
    probe, so the plan looks ahead as usual."""
    cursor = Cursor(page_size=10, recent=["a"])
    assert cursor.feed(Window(0, 10), RawPage(ids("a"), BARE)).keys == []
    assert not cursor.done
    assert cursor.plan(3) == [Window(1, 10), Window(10, 11), Window(20, 11)]


@pytest.mark.parametrize("third", [["x", "d"], ["d", "a"]])
def test_short_page_ending_at_the_last_delivered_item_not_last_seen_reads_on(
    third: list[str],
) -> None:
    """The page before ended with an item delivered long ago (a repeat). A short page ending at
    the last delivered item, or at that repeat after it, is not known to be the end: reading
    goes on."""
    cursor = Cursor(page_size=5)
    assert cursor.feed(Window(0, 5), RawPage(ids("a", "b", "c"), BARE)).keys == ["a", "b", "c"]
    assert cursor.feed(Window(2, 6), RawPage(ids("c", "d", "a"), BARE)).keys == ["d"]
    assert cursor.next_window() == Window(4, 6)
    assert cursor.feed(Window(4, 6), RawPage(ids(*third), BARE)).keys == []
    assert not cursor.done
    assert cursor.next_window() == Window(5, 6)


def test_short_page_ending_at_the_last_item_seen_further_back_needs_a_second_look() -> None:
    """Ten read; the window after them is empty, so the cursor searches one item back and finds
    [8, 9], a page ending where we stood, asked for one item before the overlap. Two items
    from one back could be a page the cap cut (less than half a page behind decides only
    below that), so the same end must be seen again before the listing ends."""
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(*range(10)), BARE))
    answers = {9: RawPage([], BARE), 8: RawPage(ids(8, 9), BARE)}
    asked: list[int] = []
    drive(cursor, lambda w: answers[w.offset], asked)
    assert asked == [9, 8, 9, 8]
    assert cursor.requests == 5
    assert cursor.accepted == 10


def test_short_page_ending_at_the_last_item_seen_less_than_half_behind_ends_it() -> None:
    """Found one item back, a page of three ending where we stood is the end at once."""
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(*range(10)), BARE))
    answers = {9: RawPage([], BARE), 8: RawPage(ids(7, 8, 9), BARE)}
    asked: list[int] = []
    drive(cursor, lambda w: answers[w.offset], asked)
    assert asked == [9, 8]
    assert cursor.done


def test_probe_bringing_several_new_items_returns_to_overlapping_windows() -> None:
    """The probe after a lone overlap item shows it again (a job landed at the head) and three
    new items: pages are not single items after all, and the next window overlaps the last
    one delivered again."""
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(0), BARE))
    cursor.feed(Window(0, 11), RawPage(ids(0), BARE))
    assert cursor.next_window() == Window(1, 10)
    assert cursor.feed(Window(1, 10), RawPage(ids(0, 1, 2, 3), BARE)).keys == [1, 2, 3]
    assert cursor.next_window() == Window(4, 11)


def test_empty_pages_that_say_more_follows_stall_from_the_first() -> None:
    """An envelope server answering every window with no items and a next_offset: each request
    is a stall, and the ninth raises."""
    cursor = Cursor(page_size=10)
    asked: list[int] = []
    with pytest.raises(SievePaginationError) as caught:
        drive(cursor, lambda w: RawPage([], ENVELOPE, w.offset + 10), asked)
    assert asked == [0] * 9
    assert str(caught.value) == progress_error(9, 0, "next_offset 10")


def test_resumed_bare_listing_ends_where_the_first_window_ends_at_the_last_id() -> None:
    """Resuming after id 4: a job landed at the head, so the first window shows [3, 4] and
    nothing after: the end, found without another request."""
    cursor = Cursor(page_size=10, offset=5, last_key=4)
    assert cursor.next_window() == Window(4, 11)
    assert cursor.feed(Window(4, 11), RawPage(ids(3, 4), BARE)).keys == []
    assert cursor.done


def test_an_empty_string_id_at_the_end_still_needs_the_second_look() -> None:
    """Resuming after the id "" at 10: as with [8, 9] found one item back, a page ending at it
    is looked at twice."""
    cursor = Cursor(page_size=10, offset=10, last_key="")
    answers = {9: RawPage([], BARE), 8: RawPage(ids(8, ""), BARE)}
    asked: list[int] = []
    drive(cursor, lambda w: answers[w.offset], asked)
    assert asked == [9, 8, 9, 8]


def test_recent_ids_given_when_resuming_are_forgotten_first() -> None:
    """A recent id given on resuming is the oldest page: it is kept while forgetting it would
    leave fewer than 1024 ids (the floor), and forgotten once it would not."""
    cursor = Cursor(page_size=10, recent=["r"])
    cursor.feed(Window(0, 10), RawPage(ids(*range(1023)), BARE))
    remembered = cursor.recent_keys(2000)
    assert len(remembered) == 1024
    assert remembered[0] == "r"
    cursor.feed(Window(1022, 10), RawPage(ids(1022, 1023), BARE))
    remembered = cursor.recent_keys(2000)
    assert len(remembered) == 1024
    assert remembered[0] == 0


def test_finding_an_item_of_a_later_page_again_is_getting_closer_too() -> None:
    """Nineteen delivered over two pages; each search back finds the last of them again with
    nothing new. Never a stall: the idle bound, 16 + 2 x 19 = 54, ends it (checked at the
    56th request in a row, a step back counting only towards the request allowance)."""
    cursor = Cursor(page_size=10)
    cursor.feed(Window(0, 10), RawPage(ids(*range(10)), ENVELOPE, 10))
    cursor.feed(Window(9, 10), RawPage(ids(*range(9, 19)), ENVELOPE, 19))

    def answer(window: Window) -> RawPage:
        if window.offset == 17:
            return RawPage(ids(17, 18), ENVELOPE, 19)
        return RawPage(ids(*(f"s{i}" for i in range(10))), ENVELOPE, window.offset + 10)

    asked: list[int] = []
    with pytest.raises(SievePaginationError) as caught:
        drive(cursor, answer, asked)
    assert asked == [18, 17] * 28
    assert str(caught.value) == progress_error(56, 17, "next_offset 19")


def test_probe_showing_a_delivered_job_pushed_by_an_insertion_reads_on() -> None:
    """A bare array one job a page: a job lands at the head while the cursor probes at its
    position, so the probe shows the job delivered last again. The cursor reads on from there
    instead of taking it for the end: every job is delivered, once."""
    listing = ["a", "b", "c"]
    delivered: list[Any] = []
    cursor = Cursor(page_size=10)
    requests = 0
    while (window := cursor.next_window()) is not None:
        if requests == 2:
            listing.insert(0, "z")
        requests += 1
        page = [{"id": key} for key in listing[window.offset : window.offset + 1]]
        delivered += cursor.feed(window, RawPage(page, BARE)).keys
        assert requests < 20
    assert delivered[:3] == ["a", "b", "c"]
    assert len(delivered) == len(set(delivered))
