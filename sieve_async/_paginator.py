"""Drives the sans-I/O `Cursor` over the transport: items, pages, read-ahead and checkpoints."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, TypedDict, TypeVar, cast

import anyio

from ._models import Page
from ._paging import NOTHING, Accepted, Cursor, RawPage, Window, is_id
from ._tasks import AsyncClosable, TaskRegistry, cancel_and_wait

__all__ = [
    "AsyncPaginator",
    "Checkpoint",
    "delivered_through",
    "listing_id",
    "make_checkpoint",
    "parse_checkpoint",
]

T = TypeVar("T")



class Checkpoint(TypedDict):
    """Where a listing stands: resume it after ``last_id``, found at or after ``offset``.

    JSON-serialisable as it is; `parse_checkpoint` checks one field by field.
    """

    version: int
    listing: str
    offset: int
    last_id: str | int | None
    recent: list[str | int]


CHECKPOINT_VERSION = 1
#: Recently delivered ids a checkpoint carries, so a resumed cursor can re-anchor even when the
#: very last delivered job has since left the listing.
_CHECKPOINT_RECENT = 8


def listing_id(path: str, status: str | None) -> str:
    """The identity a checkpoint is bound to: the listing's path and its status filter."""
    return path if status is None else f"{path}?status={status}"


def delivered_through(
    keys: list[Hashable], positions: Sequence[int], count: int, earlier: Iterable[Hashable]
) -> tuple[int, Hashable, list[Hashable]]:
    """Position, last key and recent keys once the first ``count`` items of a page (``keys``,
    ``positions``) are delivered, after the ``earlier`` recent keys of the same listing."""
    recent = [*earlier, *keys[max(0, count - _CHECKPOINT_RECENT) : count]]
    return positions[count - 1], keys[count - 1], recent[-_CHECKPOINT_RECENT:]


def make_checkpoint(
    listing: str, position: int, last: Hashable | None, recent: list[Hashable]
) -> Checkpoint:
    """A JSON-serialisable checkpoint: resume ``listing`` after ``last``, at ``position``."""
    # Keys come from `is_id`-checked ids (str or int); Hashable is the paging core's wider type.
    return {
        "version": CHECKPOINT_VERSION,
        "listing": listing,
        "offset": position,
        "last_id": cast(str | int | None, last),
        "recent": [cast(str | int, k) for k in recent if k != last],
    }


#: The fields of a checkpoint, as `make_checkpoint` writes them.
_CHECKPOINT_FIELDS = ("version", "listing", "offset", "last_id", "recent")


def parse_checkpoint(value: Any, listing: str) -> tuple[int, Hashable | None, list[Hashable]]:
    """Validate a checkpoint for ``listing``; return its offset, last id and recent ids.

    A checkpoint is the dict `make_checkpoint` writes, checked field by field: ``version``
    (this format's number), ``listing`` (this listing's identity), ``offset`` (an integer of at
    least 0), ``last_id`` (an id, or ``None`` before anything was delivered) and ``recent`` (a
    list of ids). Ids are strings or integers. Every field is required, and a field not among
    these is refused: this format has no optional fields, so an unknown one means the dict
    was written by something else or edited, and resuming from it could lose or repeat items.

    Raises:
        ValueError: it is not a checkpoint (naming the field at fault), or it belongs to another
            listing.
    """
    if not isinstance(value, dict):
        raise ValueError(f"resume= takes a paginator's .checkpoint, got {value!r}")
    if "version" not in value:
        raise ValueError("checkpoint 'version' is missing: resume= takes a paginator's .checkpoint")
    version = value["version"]
    if type(version) is not int or version != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint 'version' is {version!r}; this version of sieve_async reads "
            f"checkpoints of version {CHECKPOINT_VERSION}"
        )
    missing = [field for field in _CHECKPOINT_FIELDS if field not in value]
    if missing:
        raise ValueError(f"checkpoint {missing[0]!r} is missing")
    unknown = [field for field in value if field not in _CHECKPOINT_FIELDS]
    if unknown:
        raise ValueError(f"checkpoint field {unknown[0]!r} is not a checkpoint field")
    if value["listing"] != listing:
        raise ValueError(
            f"checkpoint 'listing': it belongs to listing {value['listing']!r}, not {listing!r}"
        )
    offset = value["offset"]
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"checkpoint 'offset' must be a non-negative integer, got {offset!r}")
    last = value["last_id"]
    if last is not None and not is_id(last):
        raise ValueError(
            f"checkpoint 'last_id' must be a string or an integer (or null), got {last!r}"
        )
    recent = value["recent"]
    if not isinstance(recent, list) or not all(map(is_id, recent)):
        raise ValueError(
            f"checkpoint 'recent' must be a list of ids (strings or integers), got {recent!r}"
        )
    return offset, last, list(recent)


class AsyncPaginator(AsyncClosable, Generic[T]):
    """Every item of one listing, fetched page by page; see the ``list_*`` methods of the client.

    Iterate it with ``async for`` for items, or `pages` for `Page` objects, or `collect` them.
    No request is sent until iteration starts. `checkpoint` may be read at any time and passed
    back as ``resume=`` to continue after the last item delivered.

    Breaking out of ``async for`` early is safe; with ``read_ahead`` pages may still be in flight,
    which `aclose` (or ``async with paginator:``, or closing the client) cancels.
    """

    def __init__(
        self,
        *,
        listing: str,
        fetch: Callable[[Window], Awaitable[RawPage]],
        structure: Callable[[Any], T],
        cursor: Cursor,
        read_ahead: int,
        tasks: TaskRegistry,
    ) -> None:
        self._listing = listing
        self._fetch = fetch
        self._structure = structure
        self._cursor = cursor
        self._read_ahead = read_ahead
        self._tasks = tasks
        # The accepted items of the current page and the index of the next one to deliver.
        # Delivering an item only moves the index; what was delivered from this page is folded
        # into the _delivered_* fields when the page is used up (`_settle`), so the per-item
        # path of ``async for`` stays a few operations long.
        self._buffer: Accepted = NOTHING
        self._next = 0
        self._buffer_window: Window | None = None
        self._inflight: deque[tuple[Window, asyncio.Task[RawPage]]] = deque()
        self._delivered_position = cursor.position
        self._delivered_last = cursor.last_key
        self._delivered_recent: deque[Hashable] = deque(
            cursor.recent_keys(_CHECKPOINT_RECENT), maxlen=_CHECKPOINT_RECENT
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsyncPaginator {self._listing} at offset {self._delivered()[0]}>"

    # -- public surface ----------------------------------------------------------------------

    @property
    def checkpoint(self) -> Checkpoint:
        """Where this listing stands: a JSON-serialisable dict for ``resume=``."""
        return make_checkpoint(self._listing, *self._delivered())

    @property
    def listing(self) -> str:
        """The identity of this listing (its path and status filter), as checkpoints name it."""
        return self._listing

    @property
    def requests(self) -> int:
        """How many pages this paginator has received so far."""
        return self._cursor.requests

    def __aiter__(self) -> AsyncPaginator[T]:
        return self

    async def __anext__(self) -> T:
        items = self._buffer.items
        index = self._next
        if index == len(items):
            items = await self._refill()
            index = 0
        # Structured before the index moves: an item that fails stays undelivered.
        item = self._structure(items[index])
        self._next = index + 1
        return item

    def pages(self) -> _PageIterator[T]:
        """Iterate `Page` objects instead of items (the rest of a partly read page comes first)."""
        return _PageIterator(self)

    async def collect(self) -> list[T]:
        """Every remaining item as a list (at most ``max_items``)."""
        return [item async for item in self]

    async def aclose(self) -> None:
        """Stop: cancel pages still in flight. Idempotent."""
        self._closed = True
        self._settle()
        # Shielded: closing often happens while the caller itself is being cancelled.
        with anyio.CancelScope(shield=True):
            await self._cancel_inflight()

    # -- internals ---------------------------------------------------------------------------

    def _delivered(self) -> tuple[int, Hashable | None, list[Hashable]]:
        """Position, last key and recent keys of what has been delivered so far."""
        index = self._next
        if not index:
            return self._delivered_position, self._delivered_last, list(self._delivered_recent)
        buffer = self._buffer
        return delivered_through(buffer.keys, buffer.positions, index, self._delivered_recent)

    def _settle(self) -> None:
        """Fold what was delivered from the current page into the delivered state; drop it all."""
        self._delivered_position, self._delivered_last, recent = self._delivered()
        self._delivered_recent.clear()
        self._delivered_recent.extend(recent)
        finished = self._buffer
        self._buffer = NOTHING
        self._next = 0
        if finished.items:
            # Freeing a page of raw jobs costs a quarter of decoding it. Done from the event
            # loop, it happens while the next request is on the wire rather than before it is
            # sent. Jobs the consumer kept hold their own raw dicts.
            asyncio.get_running_loop().call_soon(finished.items.clear)

    async def _refill(self) -> list[Any]:
        """Settle the used-up page and fetch until one brings new items; return them."""
        self._settle()
        while not self._buffer:
            if not await self._fill():
                raise StopAsyncIteration
        return self._buffer.items

    async def _next_page(self) -> Page[T] | None:
        batch = await self._next_batch()
        if batch is None:
            return None
        window = self._buffer_window
        assert window is not None
        next_offset = None if self._cursor.done else self._cursor.position
        return Page(items=batch[0], offset=window.offset, next_offset=next_offset)

    async def _next_batch(self) -> tuple[list[T], list[Hashable], Sequence[int]] | None:
        """The rest of the current page (or the next page): typed items, keys, positions."""
        if self._next == len(self._buffer.items):
            try:
                await self._refill()
            except StopAsyncIteration:
                return None
        buffer, start = self._buffer, self._next
        items = [self._structure(item) for item in buffer.items[start:]]
        self._next = len(buffer.items)
        self._settle()
        return items, buffer.keys[start:], buffer.positions[start:]

    async def _fill(self) -> bool:
        """Fetch pages until one brings new items; False once the listing is complete."""
        cursor = self._cursor
        while not self._closed:
            window = cursor.next_window()
            if window is None:
                self._abandon_inflight()
                return False
            prefetched: asyncio.Task[RawPage] | None = None
            if self._inflight and self._inflight[0][0] == window:
                prefetched = self._inflight.popleft()[1]
            elif self._inflight:
                # The list moved or the server's page size differs: the planned windows are stale.
                self._abandon_inflight()
            if self._read_ahead:
                await self._top_up(cursor.plan(self._read_ahead + 1)[1:])
            page = await (prefetched if prefetched is not None else self._fetch(window))
            accepted = cursor.feed(window, page)
            if accepted:
                self._buffer = accepted
                self._next = 0
                self._buffer_window = window
                return True
        return False

    async def _top_up(self, planned: list[Window]) -> None:
        queued = [w for w, _ in self._inflight]
        if queued != planned[: len(queued)]:
            self._abandon_inflight()
            queued = []
        for window in planned[len(queued) :]:
            self._inflight.append((window, self._tasks.spawn(self._fetch_task(window))))

    async def _fetch_task(self, window: Window) -> RawPage:
        return await self._fetch(window)

    async def _cancel_inflight(self) -> None:
        tasks = [task for _, task in self._inflight]
        self._inflight.clear()
        await cancel_and_wait(tasks)

    def _abandon_inflight(self) -> None:
        # Pages planned for a list that moved, or past the end: let them finish in the
        # background rather than cancel them, because a cancelled request keeps the server
        # busy after its slot of max_connections is freed. The client still owns (and on
        # close cancels) them.
        self._inflight.clear()


class _PageIterator(Generic[T]):
    """``async for page in paginator.pages()``."""

    def __init__(self, paginator: AsyncPaginator[T]) -> None:
        self._paginator = paginator

    def __aiter__(self) -> _PageIterator[T]:
        return self

    async def __anext__(self) -> Page[T]:
        page = await self._paginator._next_page()
        if page is None:
            raise StopAsyncIteration
        return page
