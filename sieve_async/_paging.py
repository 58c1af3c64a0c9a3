"""Sans-I/O paging core: what a page means and which window to ask for next.

Nothing here performs I/O or imports aiohttp. `decode_page` turns response bytes into a `RawPage`;
`Cursor` consumes pages and says which `Window` to request next. The promise: a listing ends
because the server said it is over, with every item that stayed delivered exactly once, in
server order, or with `SievePaginationError` saying what the server did. The rules that keep it
(the `Cursor` docstring states them as invariants; the README's "How exactly-once works" for
users):

1. Windows overlap by one item: the last one delivered anchors the next page. Found further in,
   items were inserted at the head; missing, items left, and the cursor searches back for a
   recently delivered one. Only a page placed by its anchor delivers or ends the listing.
2. An envelope ends where ``next_offset`` is -1, null or absent; any other negative value, or
   one that does not move past the requested offset, is an error. A bare array has no end
   marker: it ends at an empty page where the next item would be, or at a page shorter than
   asked that ends at a delivered item and could not have been cut short by the server's cap.
3. A progress guard: requests that deliver nothing and get no closer raise after a few.
4. Ids compare by JSON type and value; a bounded set of recent ids guards against repeats, so
   memory is O(page size).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final, Literal, NoReturn

import attrs
import orjson

from ._exceptions import EXCERPT_BYTES, SieveDecodeError, SievePaginationError, excerpt

__all__ = [
    "BARE",
    "ENVELOPE",
    "NOTHING",
    "Accepted",
    "Cursor",
    "RawPage",
    "Shape",
    "Window",
    "decode_object",
    "decode_page",
    "function_key",
    "id_key",
    "is_id",
]

Shape = Literal["envelope", "bare"]
ENVELOPE: Final = "envelope"
BARE: Final = "bare"

#: Page length assumed for step sizes before the server has shown us one.
_DEFAULT_STEP_BASIS = 100
#: Recently delivered ids kept for re-anchoring: a few pages' worth, never fewer than this.
_MIN_RECENT = 1024
#: Requests in a row that deliver nothing and anchor no later than before, before giving up.
_MAX_STALLS = 8
#: Requests in a row that deliver nothing at all, before giving up (plus two per recent id:
#: searching back for a place and walking forward from it again are bounded by those).
_MAX_IDLE = 16
#: Requests a listing may send beyond four per item delivered.
_REQUEST_ALLOWANCE = 64


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
    excerpt = body[:EXCERPT_BYTES]
    return SieveDecodeError(
        f"HTTP {status}: {problem}; the body starts with {excerpt!r}",
        status=status,
        body_start=excerpt,
        retryable=retryable,
    )


def _load_json(body: bytes, status: int) -> Any:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            # orjson refuses some valid JSON the standard library reads, such as a string
            # holding a lone surrogate escape ("\\ud800"); that rare body takes the slow path.
            return json.loads(body)
        except ValueError:
            raise _decode_error(
                f"the body is not valid JSON ({exc})", status, body, retryable=True
            ) from exc
    if _holds_wide_integer(body):
        # orjson reads an integer beyond 64 bits as a float, losing digits; the standard
        # library keeps it exact, so such a rare body takes the slow path too.
        return json.loads(body)
    return document


def decode_object(body: bytes, status: int = 200) -> dict[str, Any]:
    """Decode a response holding one JSON object (a job).

    Raises:
        SieveDecodeError: the body is not JSON, or not an object.
    """
    document = _load_json(body, status)
    if not isinstance(document, dict):
        raise _decode_error("expected a JSON object", status, body)
    return document


def decode_page(body: bytes, status: int = 200) -> RawPage:
    """Decode a listing response in either shape.

    Raises:
        SieveDecodeError: the body is not JSON, or is JSON of neither listing shape.
    """
    document = _load_json(body, status)
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
                if raw_next < -1:
                    raise SievePaginationError(
                        f"the server sent next_offset {raw_next}; only -1 marks the end of a "
                        "listing, so whether more follows is unknown"
                    )
                return RawPage(items, ENVELOPE, raw_next if raw_next >= 0 else None)
            raise _decode_error(f"'next_offset' is {raw_next!r}, not an integer", status, body)
    raise _decode_error("expected a JSON array or an object with a 'data' array", status, body)


#: Every digit as one byte, so that `bytes.find` can look for a run of digits.
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
#: The shortest integer literal orjson may not hold exactly: 2**64 has 20 digits, -2**63 - 1 has 19.
_WIDE_RUN: Final = b"0" * 19
_INT_RANGE: Final = range(-(2**63), 2**64)


def _holds_wide_integer(body: bytes) -> bool:
    """Whether ``body`` has an integer literal outside orjson's range (-2**63 to 2**64 - 1).

    Looks at runs of 19 digits or more only, which JSON text rarely has (a number inside a
    string may match too, which costs a slower decode and nothing else).
    """
    flat = body.translate(_DIGITS_AS_ZERO)
    start = flat.find(_WIDE_RUN)
    while start != -1:
        end = start + len(_WIDE_RUN)
        while flat[end : end + 1] == b"0":
            end += 1
        if flat[end : end + 1] not in (b".", b"e", b"E"):
            value = int(body[start:end])
            if (-value if body[start - 1 : start] == b"-" else value) not in _INT_RANGE:
                return True
        start = flat.find(_WIDE_RUN, end)
    return False


def is_id(value: Any) -> bool:
    """An id as JSON gives one: a string or an integer (a bool is an int to Python, never an id)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def id_key(item: Any) -> Hashable:
    """Identity of a job or a function version: its ``id``."""
    try:
        key: Hashable = item["id"]
    except (KeyError, TypeError, IndexError):
        raise SieveDecodeError(
            f"a listed item has no 'id': {excerpt(item)!r}",
            body_start=excerpt(item),
        ) from None
    if not is_id(key):
        # Accepting a bool would make ids 1 and true equal (True == 1 to Python).
        raise SieveDecodeError(
            f"a listed item's 'id' is {excerpt(key).decode()}, not a string or an integer"
        )
    return key


#: Types an ``id`` may have; `_keys_of` checks a page's ids against it in one pass.
_ID_TYPES: Final = frozenset({str, int})


def _check_next_offset(window: Window, page: RawPage) -> None:
    if page.next_offset is not None and page.next_offset <= window.offset:
        raise SievePaginationError(
            f"the server answered offset {window.offset} with next_offset "
            f"{page.next_offset}, which does not move forward; the listing would loop"
        )


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
            f"a listed function lacks 'owner_name' or 'name': {excerpt(item)!r}"
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


def _first_copies(keys: list[Hashable]) -> list[int]:
    """Indexes of the first copy of each key, in order (a page listing an id twice)."""
    seen: set[Hashable] = set()
    kept = []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            kept.append(index)
    return kept


class Cursor:
    """The paging state of one listing, fed page by page.

    Usage: ask `next_window()`, request it, `feed()` the decoded page, deliver what it returns;
    repeat until `done`. `plan(k)` lists up to ``k`` windows that will be asked next if the list
    does not move, for read-ahead.

    The invariants (the README's "How exactly-once works" states them for users):

    - ``position`` is where the first undelivered item stood when last seen; ``last_key`` is the
      last item delivered, and every recently delivered key is remembered with its rank.
    - A page is *placed* when it shows where we stand: it holds ``last_key`` or another recently
      delivered item (the anchor), or it was asked for at ``position`` itself. Only the items of
      a placed page that follow its anchor and were never delivered are delivered; then
      ``position`` becomes the end of that page. An unplaced page moves nothing: the cursor
      searches backwards for its anchor.
    - Only a placed page can end the listing: an envelope whose ``next_offset`` says so; a bare
      array at an empty page asked for at ``position``, or at a page shorter than asked that
      ends at a delivered item and cannot have been cut by the server's cap: one item from a
      server that has sent longer pages, or a page ending at the item last seen just before
      ``position`` and asked for at most half its length before it (items that landed at the
      head since moved that item less than half a page: the documented rate). Asked for
      further back, the same end seen twice in a row settles it.
    - A page without a recently delivered item, asked for before ``position``, means items
      left: the cursor steps back by 1, 2, 4... items until one shows up. At the head without
      one, it scans forward; having seen the whole list without one, it raises.
    - Every request either delivers, or moves the search back, or anchors on a later delivered
      item than the request before it; a few requests in a row that do none of these raise
      `SievePaginationError`, and so does a crawl whose requests far outnumber its items.

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
        #: The shortest page the server answered while more followed: the least its pages hold.
        self._cap: int | None = None
        #: A bare page's length, which becomes a cap candidate once items follow it.
        self._maybe_cap: int | None = None
        #: Ask for the next window at ``position`` itself, without the overlap item: a page that
        #: held only the overlap item may be the end, or a server answering one item per page.
        self._skip_overlap = False
        self._single_item_pages = False
        #: Overlapping windows ask for ``page_size + 1``, until the server refuses that.
        self._widen = True
        self._search_offset: int | None = None
        self._search_step = 0
        # Progress guard: requests in a row that delivered nothing and did not get closer.
        self._idle = 0
        self._stalls = 0
        self._anchor_rank = -1
        #: The item last seen just before ``position``, if delivered: where the next overlapping
        #: window should show it first.
        self._tail_key: Hashable | None = last_key
        #: The item the last page ended at when it may have been the end, to confirm it by.
        self._end_seen_at: Hashable | None = None
        #: Scanning forward for a recently delivered item (none was found at the head).
        self._scan = False
        # Recently accepted keys with their rank (order of delivery), a page's list at a time so
        # that forgetting them is done page by page.
        self._recent_pages: deque[list[Hashable]] = deque()
        self._recent_count = 0
        self._rank: dict[Hashable, int] = {}
        self._ranks_given = 0
        self._remember_page([k for k in dict.fromkeys([*recent, last_key]) if k is not None])

    # -- what to ask -------------------------------------------------------------------------

    @property
    def _page_basis(self) -> int:
        return self.page_size or self._largest_page or _DEFAULT_STEP_BASIS

    def _overlaps(self, position: int, has_last: bool) -> bool:
        return (
            has_last
            and position > 0
            and not self._single_item_pages
            and not self._skip_overlap
            and not self._scan
        )

    def _window_at(self, position: int, accepted: int, has_last: bool) -> Window:
        overlap = 1 if self._overlaps(position, has_last) else 0
        limit = self.page_size
        if has_last and position > 0 and limit is not None:
            # The overlap item is asked for on top of the page, so that it costs no request
            # (`narrow` stops that where the server refuses the larger limit). Room for the
            # overlap item and at least one new one, even at page_size=1; and a probe at our
            # position (see `feed`) must be able to show more than one item.
            limit = max(2, limit + overlap if self._widen else limit)
        if self.max_items is not None:
            wanted = self.max_items - accepted + overlap
            limit = wanted if limit is None else min(limit, wanted)
        return Window(position - overlap, limit)

    def next_window(self) -> Window | None:
        """The window to request next, or ``None`` when the listing is complete."""
        if self.done:
            return None
        if self._search_offset is not None:
            # Room for the anchor and one more, as in an overlapping window.
            return Window(self._search_offset, self.page_size and max(2, self.page_size))
        return self._window_at(self.position, self.accepted, self.last_key is not None)

    def plan(self, count: int) -> list[Window]:
        """Up to ``count`` windows, in order, that follow if every page comes back full.

        "Full" is the page size, or the server's cap once a page has shown it, so a server that
        cuts pages short costs read-ahead no wasted requests.
        """
        first = self.next_window()
        if first is None:
            return []
        windows = [first]
        if self._search_offset is not None or self._skip_overlap or self._scan:
            return windows
        position, accepted = self.position, self.accepted
        window = first
        while len(windows) < count:
            served = window.limit or self._largest_page
            if self._cap is not None:
                served = min(served, self._cap) if served else self._cap
            if not served:
                break
            accepted += served - (position - window.offset)
            position = window.offset + served
            if self.max_items is not None and accepted >= self.max_items:
                break
            window = self._window_at(position, accepted, True)
            if window.offset <= windows[-1].offset:
                break
            windows.append(window)
        return windows

    def narrow(self, window: Window) -> bool:
        """The server refused ``window``: if it was widened by the overlap item, ask for
        ``page_size`` from now on and return True (ask again); else False (the refusal stands)."""
        widened = self._widened(window)
        if widened:
            self._widen = False
        return widened

    def _widened(self, window: Window) -> bool:
        """Whether ``window`` asks for the overlap item on top of ``page_size``."""
        return (
            self._widen
            and self.page_size is not None
            and window.limit is not None
            and window.limit > max(2, self.page_size)
        )

    # -- what a page means -------------------------------------------------------------------

    def feed(self, window: Window, page: RawPage) -> Accepted:
        """Take the page answered for ``window``; return the items to deliver, in order.

        Raises:
            SievePaginationError: the server's answers cannot be read exactly once (a
                ``next_offset`` that does not advance, pages that bring nothing new, or a place
                in the listing that cannot be found again).
            SieveDecodeError: an item has no usable identity.
        """
        if self.done:
            return NOTHING
        self.requests += 1
        self._largest_page = max(self._largest_page, len(page.items))
        _check_next_offset(window, page)
        keys = _keys_of(self._key, page.items)
        probing, self._skip_overlap = self._skip_overlap, False
        expect_anchor = self.last_key is not None and window.offset < self.position
        # How far before the item last seen just before our position this window starts.
        behind = self.position - 1 - window.offset
        anchor = self._find_anchor(keys)
        unplaced = self._unplaced(window, page, anchor, expect_anchor, probing)
        if unplaced is not None:
            return unplaced
        accepted = self._accept(window, page.items, keys, anchor)
        if page.shape == ENVELOPE:
            ended, probe = self._envelope_end(window, page, anchor, expect_anchor)
        else:
            ended, probe = self._bare_end(
                window, keys, anchor, accepted, behind, expect_anchor=expect_anchor, probing=probing
            )
        last = keys[-1] if keys else None
        self._tail_key = last if last in self._rank else None
        if ended or (self.max_items is not None and self.accepted >= self.max_items):
            self.done = True
            return accepted
        if probe:
            self._skip_overlap = True
        elif probing or self._single_item_pages:
            self._single_item_pages = len(accepted.keys) == 1 and window.limit != 1
        self._check_progress(window, page)
        return accepted

    def _asked(self, window: Window) -> int:
        # Without a limit the server's default page length is unknown: the longest page seen.
        return window.limit or max(self._largest_page, 2)

    def _unplaced(
        self,
        window: Window,
        page: RawPage,
        anchor: int | None,
        expect_anchor: bool,
        probing: bool,
    ) -> Accepted | None:
        """What to do with a page that does not show where we stand (nothing to deliver from
        it), or ``None`` when it is placed."""
        count = len(page.items)
        if anchor is None and expect_anchor and (count or window.offset):
            if window.offset > 0:
                return self._search_back(window)
            # At the head without a recently delivered item: they all left, or so many items
            # landed at the head that the last delivered one is further on. Scan forward for
            # one, delivering nothing.
            self._scan = True
            self._search_offset = None
        if self._scan:
            if anchor is None:
                if self._shows_the_end(window, page):
                    self._lose_place()
                return self._scan_on(window, page)
            # Found one: this page is placed by it.
            self._scan = False
        if probing and anchor is None and count >= 2 and self.last_key is not None:
            # The probe found items but nothing to place them by: they follow the last item
            # delivered only if the list did not move. The overlapping window checks that.
            return self._stall(window, page)
        self._search_offset = None
        self._search_step = 0
        return None

    def _accept(
        self, window: Window, items: list[Any], keys: list[Hashable], anchor: int | None
    ) -> Accepted:
        """The items of a placed page that follow its anchor and were never delivered; move
        ``position`` to the end of the page and remember what is delivered."""
        count = len(items)
        start = 0 if anchor is None else anchor + 1
        after = window.offset + 1
        fresh_keys: list[Hashable] = keys[start:] if start else keys
        fresh_items: list[Any]
        positions: Sequence[int]
        rank = self._rank
        if rank.keys().isdisjoint(fresh_keys) and len(set(fresh_keys)) == len(fresh_keys):
            # The usual page: nothing past the anchor was delivered before, so slices serve.
            fresh_items = items[start:] if start else items
            positions = range(after + start, after + count)
        else:
            fresh = [i for i in _first_copies(keys) if i >= start and keys[i] not in rank]
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
        # Before the page is remembered, which may forget the anchor.
        anchor_rank = -1 if anchor is None else rank[keys[anchor]]
        self.position = window.offset + count
        self._note_progress(fresh_keys, anchor_rank)
        return Accepted(fresh_items, fresh_keys, positions)

    def _note_progress(self, fresh_keys: list[Hashable], anchor_rank: int) -> None:
        if fresh_keys:
            self._remember_page(fresh_keys)
            self.last_key = fresh_keys[-1]
            self.accepted += len(fresh_keys)
            self._anchor_rank = self._rank[self.last_key]
            self._idle = self._stalls = 0
        elif anchor_rank > self._anchor_rank:
            # Nothing new, but anchored on a later delivered item than before: getting closer.
            self._anchor_rank = anchor_rank
            self._idle += 1
        else:
            self._idle += 1
            self._stalls += 1

    def _envelope_end(
        self, window: Window, page: RawPage, anchor: int | None, expect_anchor: bool
    ) -> tuple[bool, bool]:
        """Whether an envelope ends the listing, and whether to probe at our position next."""
        count = len(page.items)
        asked = self._asked(window)
        ended = page.is_end
        # Only the overlap item came back while more follows: a server answering one item per
        # page. Ask next at our position, without the overlap item.
        probe = count == 1 and anchor == 0 and expect_anchor
        if not ended and 2 <= count < min(asked, self._cap or asked):
            self._cap = count
        return ended, probe

    def _bare_end(
        self,
        window: Window,
        keys: list[Hashable],
        anchor: int | None,
        accepted: Accepted,
        behind: int,
        *,
        expect_anchor: bool,
        probing: bool,
    ) -> tuple[bool, bool]:
        """Whether a bare array ends the listing, and whether to probe at our position next.

        A bare array has no end marker. It ends at an empty page asked for at our position, or
        at the head (everything left), or at a short page that cannot have been cut by the
        server's cap (`_short_page_end`). A probe at our position that shows only items already
        delivered says jobs landed at the head and pushed them there: what follows them is
        still to come, so the cursor probes again past them.
        """
        count = len(keys)
        end_seen_at, self._end_seen_at = self._end_seen_at, None
        if not keys:
            ended, probe = not expect_anchor or window.offset == 0, False
        elif probing and anchor is not None and not accepted.keys:
            ended, probe = False, True
        else:
            ended, probe = self._short_page_end(
                window, keys, anchor, behind, end_seen_at, expect_anchor=expect_anchor
            )
        if accepted.keys and self._maybe_cap is not None:
            self._cap = min(self._cap or self._maybe_cap, self._maybe_cap)
        # A page as long as asked shows no cap: the server gave all it was asked for.
        self._maybe_cap = count if accepted.keys and 2 <= count < self._asked(window) else None
        return ended, probe

    def _short_page_end(
        self,
        window: Window,
        keys: list[Hashable],
        anchor: int | None,
        behind: int,
        end_seen_at: Hashable | None,
        *,
        expect_anchor: bool,
    ) -> tuple[bool, bool]:
        """A bare page shorter than asked that ends at an item already delivered is the end
        when the server's cap cannot have cut it:

        - a page of one item, from a server that has sent longer pages;
        - a page ending at the item last seen just before our position, asked for at most half
          its length before that place. That item moved on only by the jobs that landed at the
          head since, fewer than half of any page the server sends (the documented rate), so a
          page the cap cut would show what follows it. Asked for further back, the same end
          seen twice in a row settles it.
        """
        count = len(keys)
        at_delivered = anchor is not None and anchor == count - 1
        # Shorter than asked, and than the shortest page after which more came. A widened
        # window counts as asking for page_size: a server whose pages stop at page_size would
        # otherwise make every full page look short, and a page repeated at every offset
        # look like the end.
        asked = self._asked(window) - self._widened(window)
        short = count < asked and (self._cap is None or count < self._cap)
        if not (at_delivered and short):
            return False, False
        if count == 1:
            # Unless the server has sent longer pages, this may be one that answers one item
            # per page: the next window, at our position, tells.
            ended = self._largest_page >= 2
            return ended, not ended and expect_anchor
        if keys[-1] == self._tail_key and behind >= 0:
            self._end_seen_at = keys[-1]
            return 2 * behind < count or end_seen_at == keys[-1], False
        return False, False

    def _shows_the_end(self, window: Window, page: RawPage) -> bool:
        """The page reaches the end of the list: the envelope says so, or a bare page came
        back shorter than asked."""
        if page.shape == ENVELOPE:
            return page.is_end
        return len(page.items) < (window.limit or self._largest_page)

    def _scan_on(self, window: Window, page: RawPage) -> Accepted:
        """Step over a page with no recently delivered item, delivering nothing from it."""
        self.position = window.offset + len(page.items)
        self._idle += 1
        self._check_progress(window, page)
        return NOTHING

    def _lose_place(self) -> NoReturn:
        """The whole listing was seen without one of the recently delivered items: they all
        left it. Where the undelivered items stand among the ones now listed cannot be told,
        and starting over would deliver earlier items again."""
        raise SievePaginationError(
            f"lost our place in the listing: none of the {len(self._rank)} jobs delivered last "
            "is in it any more (they all left it while it was read), so what it holds now "
            "cannot be placed after them; list it again from the start"
        )

    def _search_back(self, window: Window) -> Accepted:
        """The page holds none of the recently delivered items: items before ``position`` left
        the listing, so the anchor now stands earlier: by as many items as left, usually a few.
        Step back by one item, then twice as far as the step before each time: a few items
        leaving are found in a request or two, a list shrinking as fast as the search steps is
        still caught up with, and a step too far only costs walking forward again over
        delivered items."""
        step = max(1, 2 * self._search_step)
        self._search_step = step
        self._search_offset = max(0, window.offset - step)
        self._anchor_rank = -1
        self._idle += 1
        self._check_requests()
        return NOTHING

    def _stall(self, window: Window, page: RawPage) -> Accepted:
        """A request that delivered nothing and got no closer to where we stand."""
        self._idle += 1
        self._stalls += 1
        self._check_progress(window, page)
        return NOTHING

    def _check_progress(self, window: Window, page: RawPage) -> None:
        if self._stalls > _MAX_STALLS or self._idle > _MAX_IDLE + 2 * len(self._rank):
            what = (
                f"next_offset {page.next_offset}"
                if page.shape == ENVELOPE
                else f"{len(page.items)} items"
            )
            raise SievePaginationError(
                f"{self._idle} requests in a row brought no new item (the last: offset "
                f"{window.offset} answered with {what}, all delivered before). The server "
                "repeats pages, or items land at the head faster than pages are read"
                + (f" (try a page_size above {self.page_size})" if self.page_size else "")
            )
        self._check_requests()

    def _check_requests(self) -> None:
        if self.requests > _REQUEST_ALLOWANCE + 4 * self.accepted:
            raise SievePaginationError(
                f"{self.requests} requests brought only {self.accepted} items; the server's "
                "pages do not add up to a listing"
            )

    def _find_anchor(self, keys: list[Hashable]) -> int | None:
        """Index of ``last_key`` in the page, else of the last recently delivered item."""
        last = self.last_key
        if last is not None:
            try:
                return keys.index(last)
            except ValueError:
                pass
        rank = self._rank
        if not rank:
            return None
        for i in range(len(keys) - 1, -1, -1):
            if keys[i] in rank:
                return i
        return None

    def _recent_bound(self) -> int:
        return max(4 * self._page_basis, _MIN_RECENT)

    def _remember_page(self, keys: list[Hashable]) -> None:
        """Remember newly accepted keys with their rank; forget whole old pages past the bound."""
        if not keys:
            return
        first = self._ranks_given
        self._ranks_given += len(keys)
        self._recent_pages.append(keys)
        self._rank.update(zip(keys, range(first, first + len(keys)), strict=True))
        self._recent_count += len(keys)
        bound = self._recent_bound()
        pages = self._recent_pages
        while self._recent_count - len(pages[0]) >= bound:
            oldest = pages.popleft()
            self._recent_count -= len(oldest)
            rank = self._rank
            for key in oldest:
                del rank[key]

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
