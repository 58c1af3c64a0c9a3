"""Sans-I/O paging core: what a page means and which window to ask for next.

Nothing here performs I/O or imports aiohttp. `decode_page` turns response bytes into a `RawPage`;
`Cursor` consumes pages and says which `Window` to request next. The rules (see DESIGN.md):

1. Both response shapes. An envelope ``{"data": [...], "next_offset": N}`` ends at ``-1`` (or a
   missing/null ``next_offset``). A bare array has no end marker: a short page may just be the
   server's cap, so the listing ends only on a page with nothing new in it.
2. A ``next_offset`` that does not move past the requested offset raises `SievePaginationError`.
3. Exactly once under a moving list: every window after the first starts one item early, so pages
   overlap by one. Finding the last delivered id at the overlap means nothing moved; finding it
   further in means items were inserted ahead of us (skip through it); not finding it means items
   were removed ahead of us, so the cursor steps back until a recently delivered id shows up. A
   bounded set of recent ids guards against repeats, so memory is O(page size).
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs
import orjson

from ._exceptions import SieveDecodeError, SievePaginationError

__all__ = [
    "BARE",
    "ENVELOPE",
    "NOTHING",
    "Accepted",
    "Cursor",
    "RawPage",
    "Shape",
    "Window",
    "decode_page",
    "function_key",
    "id_key",
]

Shape = Literal["envelope", "bare"]
ENVELOPE: Final = "envelope"
BARE: Final = "bare"

#: How many bytes of an undecodable body an error message quotes.
BODY_EXCERPT = 200
#: Page length assumed for step sizes before the server has shown us one.
_DEFAULT_STEP_BASIS = 100
#: Recently delivered ids kept for re-anchoring: a few pages' worth, never fewer than this.
_MIN_RECENT = 1024


@attrs.frozen
class Window:
    """One request's ``offset`` and ``limit`` (``None``: let the server choose)."""

    offset: int
    limit: int | None


@attrs.frozen
class RawPage:
    """A decoded page: the raw item dicts, the shape, and (envelope only) the server's next offset.

    ``next_offset`` is ``None`` both for a bare array and for an envelope that marks the end;
    `is_end` tells them apart.
    """

    items: list[Any]
    shape: Shape
    next_offset: int | None = None

    @property
    def is_end(self) -> bool:
        """True when the server itself says this is the last page."""
        return self.shape == ENVELOPE and self.next_offset is None


def _decode_error(
    problem: str, status: int, body: bytes, *, retryable: bool = False
) -> SieveDecodeError:
    excerpt = body[:BODY_EXCERPT]
    return SieveDecodeError(
        f"HTTP {status}: {problem}; the body starts with {excerpt!r}",
        status=status,
        body_start=excerpt,
        retryable=retryable,
    )


def _loads_without_collecting(body: bytes) -> Any:
    """``orjson.loads`` with the cyclic garbage collector held off for the call.

    A page of 500 jobs makes thousands of containers, and every few hundred allocations the
    collector would walk the young ones, all still alive, and promote them to be walked again
    later: that roughly doubled the cost of decoding a page. Held off, the page is walked once
    when the next collection comes. ``orjson.loads`` is one C call that keeps the GIL, so no
    other thread or task runs while the collector is off; a collector the application turned
    off stays off.
    """
    if not gc.isenabled():
        return orjson.loads(body)
    gc.disable()
    try:
        return orjson.loads(body)
    finally:
        gc.enable()


def decode_page(body: bytes, status: int = 200) -> RawPage:
    """Decode a listing response in either shape.

    Raises:
        SieveDecodeError: the body is not JSON, or is JSON of neither listing shape.
    """
    try:
        document = _loads_without_collecting(body)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(
            f"the body is not valid JSON ({exc})", status, body, retryable=True
        ) from exc
    if isinstance(document, list):
        return RawPage(document, BARE)
    if isinstance(document, dict):
        items = document.get("data")
        if isinstance(items, list):
            # ListResponse[Job] in the OpenAPI document: next_offset defaults to -1 at the end.
            raw_next = document.get("next_offset", -1)
            if raw_next is None:
                return RawPage(items, ENVELOPE, None)
            if isinstance(raw_next, int) and not isinstance(raw_next, bool):
                return RawPage(items, ENVELOPE, raw_next if raw_next >= 0 else None)
            raise _decode_error(f"'next_offset' is {raw_next!r}, not an integer", status, body)
    raise _decode_error("expected a JSON array or an object with a 'data' array", status, body)


def id_key(item: Any) -> Hashable:
    """Identity of a job or a function version: its ``id``."""
    try:
        key = item["id"]
    except (KeyError, TypeError, IndexError):
        raise SieveDecodeError(
            f"a listed item has no 'id': {orjson.dumps(item)[:BODY_EXCERPT]!r}",
            body_start=orjson.dumps(item)[:BODY_EXCERPT],
        ) from None
    if not isinstance(key, str | int):
        raise SieveDecodeError(f"a listed item's 'id' is {key!r}, not a string")
    return key


#: Types an ``id`` may have; `_keys_of` checks a page's ids against it in one pass.
_ID_TYPES: Final = frozenset({str, int})


def _keys_of(key: Callable[[Any], Hashable], items: list[Any]) -> list[Hashable]:
    """``[key(item) for item in items]``, with a faster path for ids that are all well formed."""
    if key is id_key:
        try:
            keys: list[Hashable] = [item["id"] for item in items]
        except (KeyError, TypeError, IndexError):
            pass  # the item-by-item path names the culprit
        else:
            if set(map(type, keys)) <= _ID_TYPES:
                return keys
    return [key(item) for item in items]


def function_key(item: Any) -> Hashable:
    """Identity of a function: ``owner_name/name`` (functions carry no ``id`` in the API)."""
    try:
        return f"{item['owner_name']}/{item['name']}"
    except (KeyError, TypeError, IndexError):
        raise SieveDecodeError(
            f"a listed function lacks 'owner_name' or 'name': {orjson.dumps(item)[:BODY_EXCERPT]!r}"
        ) from None


@attrs.frozen
class Accepted:
    """What a page brought: the new items in order, their keys, and the resume position after
    each. Parallel lists rather than an object per item: fewer allocations on the hot path, and
    fewer objects for the garbage collector to visit while the page is consumed."""

    items: list[Any]
    keys: list[Hashable]
    positions: Sequence[int]

    def __len__(self) -> int:
        return len(self.items)


#: A page that brought nothing new.
NOTHING: Final = Accepted([], [], [])


class Cursor:
    """The paging state of one listing, fed page by page.

    Usage: ask `next_window()`, request it, `feed()` the decoded page, deliver what it returns;
    repeat until `done`. `plan(k)` lists up to ``k`` windows that will be asked next if the list
    does not move, for read-ahead.

    Args:
        page_size: the ``limit`` to send, or ``None`` for the server's default.
        offset: where to start in the listing.
        max_items: stop after accepting this many items.
        key: the identity of an item (``id_key`` or ``function_key``).
        last_key: the last item delivered before, when resuming.
        recent: other recently delivered keys, oldest first, when resuming.
    """

    def __init__(
        self,
        *,
        page_size: int | None = None,
        offset: int = 0,
        max_items: int | None = None,
        key: Callable[[Any], Hashable] = id_key,
        last_key: Hashable | None = None,
        recent: Iterable[Hashable] = (),
    ) -> None:
        self.page_size = page_size
        self.position = offset
        self.max_items = max_items
        self.last_key: Hashable | None = last_key
        self.accepted = 0
        self.done = max_items == 0
        self.requests = 0
        self._key = key
        self._largest_page = 0
        # A server that caps pages at one item makes an overlapping window return only the
        # item we already have; these two flags tell that apart from a one-item tail.
        self._confirming_end = False
        self._single_item_pages = False
        self._search_offset: int | None = None
        self._previous_empty_window: Window | None = None
        # Recently accepted keys, a page's list at a time, so that remembering and forgetting
        # them are bulk set operations rather than a Python loop per item.
        self._recent_pages: deque[list[Hashable]] = deque()
        self._recent_count = 0
        self._recent_set: set[Hashable] = set()
        self._remember_page([k for k in [*recent, last_key] if k is not None])

    # -- what to ask -------------------------------------------------------------------------

    @property
    def _page_basis(self) -> int:
        return self.page_size or self._largest_page or _DEFAULT_STEP_BASIS

    @property
    def _overlapping(self) -> bool:
        return (
            self.last_key is not None
            and self.position > 0
            and self.page_size != 1
            and not self._single_item_pages
            and not self._confirming_end
        )

    def next_window(self) -> Window | None:
        """The window to request next, or ``None`` when the listing is complete."""
        if self.done:
            return None
        if self._search_offset is not None:
            return Window(self._search_offset, self.page_size)
        overlap = 1 if self._overlapping else 0
        limit = self.page_size
        if self.max_items is not None:
            wanted = self.max_items - self.accepted + overlap
            limit = wanted if limit is None else min(limit, wanted)
        return Window(self.position - overlap, limit)

    def plan(self, count: int) -> list[Window]:
        """Up to ``count`` windows, in order, that follow if every page comes back full."""
        first = self.next_window()
        if first is None:
            return []
        windows = [first]
        stride_basis = first.limit or self._largest_page
        if count <= 1 or self._search_offset is not None or not stride_basis:
            return windows
        # After a full page the next window starts at its last item, one item early.
        stride = stride_basis if self._single_item_pages else stride_basis - 1
        if stride <= 0:
            return windows
        expected_new = first.limit - (1 if self._overlapping else 0) if first.limit else 0
        offset = first.offset
        for _ in range(count - 1):
            if self.max_items is not None and self.accepted + expected_new >= self.max_items:
                break
            offset += stride
            limit = self.page_size
            if self.max_items is not None:
                wanted = self.max_items - self.accepted - expected_new + 1
                limit = wanted if limit is None else min(limit, wanted)
            windows.append(Window(offset, limit))
            expected_new += (limit or stride_basis) - 1
        return windows

    # -- what a page means -------------------------------------------------------------------

    def feed(self, window: Window, page: RawPage) -> Accepted:
        """Take the page answered for ``window``; return the items to deliver, in order."""
        if self.done:
            return NOTHING
        self.requests += 1
        items = page.items
        count = len(items)
        self._largest_page = max(self._largest_page, count)
        if page.next_offset is not None and page.next_offset <= window.offset:
            raise SievePaginationError(
                f"the server answered offset {window.offset} with next_offset "
                f"{page.next_offset}, which does not move forward; the listing would loop"
            )
        keys = _keys_of(self._key, items)
        if self._confirming_end:
            self._confirming_end = False
            self._single_item_pages = count > 0
        searching = self._search_offset is not None
        expect_anchor = self.last_key is not None and window.offset < self.position

        start = 0
        if expect_anchor:
            anchor = self._find_anchor(keys)
            if anchor is None:
                if window.offset > 0:
                    # Items before our position left the listing; look further back.
                    step = max(1, self._page_basis // 2)
                    self._search_offset = max(0, window.offset - step)
                    return NOTHING
                # Back at the start with none of our recent items in sight: all of them left
                # the listing, and whatever remains here has not been delivered.
            else:
                start = anchor + 1
        self._search_offset = None

        after = window.offset + 1
        recent = self._recent_set
        fresh_keys = keys[start:] if start else keys
        fresh_items: list[Any]
        positions: Sequence[int]
        if recent.isdisjoint(fresh_keys):
            # The usual page: nothing past the anchor was delivered before, so slices serve.
            fresh_items = items[start:] if start else items
            positions = range(after + start, after + count)
        else:
            fresh = [i for i in range(start, count) if keys[i] not in recent]
            fresh_keys = [keys[i] for i in fresh]
            fresh_items = [items[i] for i in fresh]
            positions = [after + i for i in fresh]
        if self.max_items is not None:
            room = self.max_items - self.accepted
            fresh_items, fresh_keys, positions = (
                fresh_items[:room],
                fresh_keys[:room],
                positions[:room],
            )

        if page.shape == ENVELOPE and page.next_offset is not None:
            next_position = page.next_offset
        else:
            next_position = window.offset + count

        accepted = Accepted(fresh_items, fresh_keys, positions)
        if fresh_keys:
            self._remember_page(fresh_keys)
            self.last_key = fresh_keys[-1]
            self.accepted += len(fresh_keys)

        nothing_new = not fresh_keys
        if (count == 0 and (not expect_anchor or window.offset == 0)) or page.is_end:
            self.done = True
        elif nothing_new and start == count and count > 0 and expect_anchor:
            # The page ends at an item we delivered: nothing follows it, so the listing ends,
            # with two exceptions. Re-anchoring on a full page after items left the listing:
            # read on from there. A single item while every page held one: a one-item tail,
            # or a server capping pages at one? Ask once more without the overlap to know.
            if searching and count >= self._largest_page:
                pass
            elif count == 1 and self._largest_page == 1:
                self._confirming_end = True
            else:
                self.done = True
        elif self.max_items is not None and self.accepted >= self.max_items:
            self.done = True
        self.position = next_position

        if nothing_new and not self.done:
            upcoming = self.next_window()
            if upcoming in (window, self._previous_empty_window):
                raise SievePaginationError(
                    f"the server keeps answering offset {window.offset} with nothing new; "
                    "the listing would loop"
                )
            self._previous_empty_window = window
        else:
            self._previous_empty_window = None
        return accepted

    def _find_anchor(self, keys: list[Hashable]) -> int | None:
        last = self.last_key
        for i, k in enumerate(keys):
            if k == last:
                return i
        for i in range(len(keys) - 1, -1, -1):
            if keys[i] in self._recent_set:
                return i
        return None

    def _recent_bound(self) -> int:
        return max(4 * self._page_basis, _MIN_RECENT)

    def _remember_page(self, keys: list[Hashable]) -> None:
        """Remember newly accepted keys; forget whole old pages beyond the bound."""
        if not keys:
            return
        self._recent_pages.append(keys)
        self._recent_set.update(keys)
        self._recent_count += len(keys)
        bound = self._recent_bound()
        pages = self._recent_pages
        # Accepted keys are never already remembered, so dropping a page's keys drops only
        # those; at least `bound` keys stay known.
        while self._recent_count - len(pages[0]) >= bound:
            oldest = pages.popleft()
            self._recent_count -= len(oldest)
            self._recent_set.difference_update(oldest)

    def recent_keys(self, count: int) -> list[Hashable]:
        """The last ``count`` accepted keys, oldest first (for checkpoints)."""
        if count <= 0:
            return []
        keys: list[Hashable] = []
        for page in reversed(self._recent_pages):
            keys[:0] = page[-(count - len(keys)) :]
            if len(keys) >= count:
                break
        return keys
