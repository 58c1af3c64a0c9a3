"""Drives the sans-I/O `Cursor` over the transport: items, pages, read-ahead and checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio

from ._checkpoint import RECENT, Checkpoint, Delivered
from ._columns import ArrowRows
from ._exceptions import SieveInvalidRequestError
from ._models import Job, Page
from ._paging import NOTHING, Accepted, Cursor, RawPage, Window
from ._tasks import AsyncClosable, TaskRegistry, cancel_and_wait
from ._window import WindowState

__all__ = ["AsyncPaginator"]

T = TypeVar("T")

logger = logging.getLogger("sieve_async")


def one_shot_error(what: str) -> RuntimeError:
    """The error of a second ``async for``, ``pages()`` or ``collect()`` over one listing."""
    return RuntimeError(
        f"this {what} was already iterated; it reads its listing once. Call the list_* method "
        "again to read it anew, or pass resume=<its checkpoint> to continue where it stopped"
    )


class AsyncPaginator(AsyncClosable, Generic[T]):
    """Every item of one listing, fetched page by page; see the ``list_*`` methods of the client.

    Iterate it with ``async for`` for items, or `pages` for `Page` objects, or `collect` them:
    once. A paginator is one-shot: a second ``async for``, ``pages()`` or ``collect()`` raises
    ``RuntimeError``, whether the first finished or stopped part way.
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
        window: WindowState | None = None,
        max_items: int | None = None,
    ) -> None:
        self._listing = listing
        self._fetch = fetch
        self._structure = structure
        self._cursor = cursor
        self._read_ahead = read_ahead
        self._tasks = tasks
        self._time_window = window
        # With a time window the cursor cannot count toward max_items (it sees the items left
        # out too), so the items kept are counted here.
        self._left = max_items if window is not None else None
        # The accepted items of the current page and the index of the next one to deliver.
        # Delivering an item only moves the index; what was delivered from this page is folded
        # into `_before` when the page is used up (`_settle`), so the per-item path of
        # ``async for`` stays a few operations long.
        self._buffer: Accepted = NOTHING
        self._next = 0
        self._buffer_window: Window | None = None
        self._inflight: deque[tuple[Window, asyncio.Task[RawPage]]] = deque()
        #: What was delivered before the current page.
        self._before = Delivered(
            listing, cursor.position, cursor.last_key, tuple(cursor.recent_keys(RECENT))
        )
        self._closed = False
        self._iterated = False

    def __repr__(self) -> str:
        return f"<AsyncPaginator {self._listing} at offset {self._delivered().position}>"

    # -- public surface ----------------------------------------------------------------------

    @property
    def checkpoint(self) -> Checkpoint:
        """Where this listing stands: a JSON-serialisable dict for ``resume=``."""
        return self._delivered().checkpoint()

    @property
    def listing(self) -> str:
        """The identity of this listing (its path and status filter), as checkpoints name it."""
        return self._listing

    @property
    def requests(self) -> int:
        """How many pages this paginator has received so far."""
        return self._cursor.requests

    def __aiter__(self) -> AsyncPaginator[T]:
        self._claim()
        return self

    def _claim(self) -> None:
        if self._iterated:
            raise one_shot_error("paginator")
        self._iterated = True

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
        """Iterate `Page` objects instead of items (the rest of a page partly read with
        ``anext(paginator)`` comes first).

        Raises:
            RuntimeError: the paginator was already iterated (see the class docstring).
        """
        self._claim()
        return _PageIterator(self)

    async def collect(self) -> list[T]:
        """Every item as a list (at most ``max_items``).

        Raises:
            RuntimeError: the paginator was already iterated (see the class docstring).
        """
        return [item async for item in self]

    async def to_arrow(self: AsyncPaginator[Job]) -> Any:
        """Every job of the listing as a ``pyarrow.Table`` (the ``parquet`` extra).

        The columns are the Parquet export's: ``_sieve_function`` (each job's ``owner/name``),
        the job's fields with the three timestamps as UTC timestamps and the other fields as
        text (nested values as JSON), and ``_extra`` (fields this version does not model). So
        ``polars.from_arrow(await jobs.to_arrow())`` or ``.to_pandas()`` gives a DataFrame.
        Iterates the paginator: once, like `collect`.

        Raises:
            ImportError: pyarrow is not installed; raised before any request.
            RuntimeError: the paginator was already iterated.
        """
        rows = ArrowRows()
        pages = ((None, page.items) async for page in self.pages())
        async with contextlib.aclosing(pages):
            return await rows.gather(pages)

    async def aclose(self) -> None:
        """Stop: cancel pages still in flight. Idempotent."""
        self._closed = True
        self._settle()
        # Shielded: closing often happens while the caller itself is being cancelled.
        with anyio.CancelScope(shield=True):
            await self._cancel_inflight()

    # -- internals ---------------------------------------------------------------------------

    def _delivered(self) -> Delivered:
        """What has been delivered so far, the current page included."""
        buffer = self._buffer
        return self._before.after(buffer.keys, buffer.positions, self._next)

    def _settle(self) -> None:
        """Fold what was delivered from the current page into `_before`; drop the page."""
        self._before = self._delivered()
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
        """The rest of the current page (or the next page), typed, all of it delivered."""
        if self._next == len(self._buffer.items):
            try:
                await self._refill()
            except StopAsyncIteration:
                return None
        buffer, start, window = self._buffer, self._next, self._buffer_window
        assert window is not None
        before = self._delivered()
        items = [self._structure(item) for item in buffer.items[start:]]
        keys, positions = buffer.keys[start:], buffer.positions[start:]
        self._next = len(buffer.items)
        self._settle()
        next_offset = None if self._ended() else self._cursor.position

        def checkpoints(count: int) -> Checkpoint:
            return before.after(keys, positions, count).checkpoint()

        return Page(
            items=items, offset=window.offset, next_offset=next_offset, checkpoints=checkpoints
        )

    def _ended(self) -> bool:
        """The cursor is done, or the time window has passed its ``since``."""
        time_window = self._time_window
        passed = time_window is not None and time_window.stopped
        return self._cursor.done or passed or self._left == 0

    def _in_window(self, accepted: Accepted) -> Accepted:
        """The items of ``accepted`` inside the time window (all of them without one)."""
        if self._time_window is None:
            return accepted
        keep = self._time_window.keep(accepted.items)
        if self._left is not None:
            keep = keep[: self._left]
            self._left -= len(keep)
        if len(keep) == len(accepted.items):
            return accepted
        # The kept items keep their own positions: a checkpoint after one of them resumes
        # just past it, and the items left out are read (and left out) again.
        return Accepted(
            [accepted.items[i] for i in keep],
            [accepted.keys[i] for i in keep],
            [accepted.positions[i] for i in keep],
        )

    async def _fill(self) -> bool:
        """Fetch pages until one brings new items; False once the listing is complete."""
        cursor = self._cursor
        while not self._closed:
            window = None if self._ended() else cursor.next_window()
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
            try:
                page = await (prefetched if prefetched is not None else self._fetch(window))
            except SieveInvalidRequestError:
                if not cursor.narrow(window):
                    raise
                logger.info(
                    "%s: the server refused limit=%s; asking for page_size=%s from now on",
                    self._listing,
                    window.limit,
                    cursor.page_size,
                )
                self._abandon_inflight()
                continue
            accepted = self._in_window(cursor.feed(window, page))
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
