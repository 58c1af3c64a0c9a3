"""Many job listings at once: bounded requests, bounded memory, clean cancellation.

The producers run in an anyio task group that lives entirely inside one background task owned
by the client, so no cancel scope is ever held open across a ``yield`` to the consumer. Whole
pages reach the consumer through a bounded memory object stream: a slow consumer blocks the
producers, which then stop asking for pages. Handing over pages rather than jobs keeps the
per-job cost of the hand-over to a list index, so the client's CPU stays off the critical path
of the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal, NoReturn, Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._checkpoint import Checkpoint
from ._columns import ArrowRows
from ._exceptions import SieveError
from ._http import Request, Response, Sender
from ._models import FunctionRef, Job, Page
from ._paginator import AsyncPaginator, one_shot_error
from ._tasks import AsyncClosable, Held, TaskRegistry, cancel_and_wait

__all__ = ["FanOut", "OnError"]

logger = logging.getLogger("sieve_async")

OnError = Literal["raise", "continue"]
ListingFactory = Callable[[FunctionRef, Sender, Checkpoint | None], AsyncPaginator[Job]]
#: A page on its way to the consumer, and whose it is; ``None`` says the listing has ended.
Batch = tuple[FunctionRef, Page[Job] | None]
#: What `FanOut.checkpoints` holds for a listing that was delivered to its end.
DONE: Literal["done"] = "done"


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        return exc
    return group  # pragma: no cover - an exception group is never empty


class FanOut(AsyncClosable):
    """``(ref, job)`` pairs from many job listings, interleaved as they arrive.

    Returned by `SieveClient.list_jobs_for_functions`. Iterate with ``async for`` (or `pages`
    for whole pages), once: a second iteration raises ``RuntimeError``. Use ``async with`` or
    `aclose` to stop early, `stop` to end one listing.
    With ``on_error="continue"``, `failures` lists the listings that failed. `checkpoints` says
    where each listing stands, for ``resume=``.
    """

    def __init__(
        self,
        *,
        refs: Sequence[FunctionRef],
        listing: ListingFactory,
        sender: Sender,
        concurrency: int,
        on_error: OnError,
        buffer_size: int,
        tasks: TaskRegistry,
        listing_ids: Mapping[FunctionRef, str],
        resume: Mapping[FunctionRef, Checkpoint | Literal["done"]] | None = None,
        max_items: int | None = None,
    ) -> None:
        self.refs = tuple(refs)
        self.concurrency = concurrency
        self.on_error = on_error
        #: ``(ref, error)`` for each listing that failed under ``on_error="continue"``.
        self.failures: list[tuple[FunctionRef, SieveError]] = []
        #: Listings read to their end; some of their jobs may not be handed out yet (see `done`).
        self.completed: list[FunctionRef] = []
        self._listing = listing
        self._sender = sender
        self._buffer_size = buffer_size
        self._tasks = tasks
        self._send: MemoryObjectSendStream[Batch] | None = None
        self._receive: MemoryObjectReceiveStream[Batch] | None = None
        # The page being handed out, whose it is, and its items (nothing is returned from an
        # empty list); `_next` indexes the next item to hand out.
        self._ref = FunctionRef(name="-", owner_name="-")
        self._current: Page[Job] | None = None
        self._page: list[Job] = []
        # Per listing, the checkpoint after the last page the consumer finished.
        self._listing_ids = dict(listing_ids)
        self._delivered: dict[FunctionRef, Checkpoint] = {}
        self._resume = {r: c for r, c in (resume or {}).items() if c != DONE}
        self._done: set[FunctionRef] = {r for r, c in (resume or {}).items() if c == DONE}
        self._stopped: set[FunctionRef] = set()
        self._next = 0
        self._runner: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._iterated = False
        #: Jobs still to hand out under ``max_items`` (``None``: no limit).
        self._left = max_items

    def __repr__(self) -> str:
        return f"<FanOut {len(self.refs)} listings, concurrency={self.concurrency}>"

    def _start(self) -> MemoryObjectReceiveStream[Batch]:
        if self._receive is None:
            send, receive = anyio.create_memory_object_stream[Batch](self._buffer_size)
            try:
                self._runner = self._tasks.spawn(self._run(send))
            except BaseException:
                # A closed client spawns nothing; the streams must not outlive the refusal.
                send.close()
                receive.close()
                raise
            self._send, self._receive = send, receive
        return self._receive

    def __aiter__(self) -> FanOut:
        self._claim()
        return self

    def _claim(self) -> None:
        if self._iterated:
            raise one_shot_error("fan-out")
        self._iterated = True

    async def __anext__(self) -> tuple[FunctionRef, Job]:
        index = self._next
        if index < len(self._page):
            self._next = index + 1
            return self._ref, self._page[index]
        if self._finished:
            raise StopAsyncIteration
        ref, page = await self._receive_page()
        self._next = 1
        return ref, page[0]

    async def _receive_page(self) -> tuple[FunctionRef, list[Job]]:
        """Make the next page current (raising StopAsyncIteration at the end); return it."""
        self._fold()
        if self._left == 0:
            await self._end()
        receive = self._start()
        while True:
            batch = await _receive_or_none(receive)
            if batch is None:
                # Outside the receive's except clause: a listing's error raised here must not
                # carry the end of the stream as its context.
                await self._end()
            ref, page = batch
            if ref in self._stopped:
                continue
            if page is not None:
                break
            self._done.add(ref)
        items = page.items
        if self._left is not None:
            # The page's checkpoint counts only what was handed out, so a cut page resumes
            # right after its last job given.
            items = items[: self._left]
            self._left -= len(items)
        self._ref, self._current, self._page = ref, page, items
        return ref, items

    @property
    def done(self) -> AbstractSet[FunctionRef]:
        """Listings handed out to their end (or stopped), including ones resumed as done.

        A live, read-only view: it grows as iteration goes on.
        """
        return self._done

    def pages(self) -> _FanOutPages:
        """Iterate ``(ref, jobs)`` a page at a time instead of job by job.

        Each page is handed out whole (the rest of a partly read one first), so `checkpoints`
        count all of it as delivered once it has been yielded. Like ``async for``, once only.
        """
        self._claim()
        return _FanOutPages(self)

    async def _next_page(self) -> tuple[FunctionRef, list[Job]]:
        if self._next < len(self._page):
            rest = self._page[self._next :]
        elif self._finished:
            raise StopAsyncIteration
        else:
            _, rest = await self._receive_page()
        self._next = len(self._page)
        return self._ref, rest

    async def to_arrow(self) -> Any:
        """Every job of every listing as one ``pyarrow.Table`` (the ``parquet`` extra), in the
        order they arrive, with the Parquet export's columns (see `AsyncPaginator.to_arrow`):
        ``_sieve_function`` names the listing each job came from. Iterates the fan-out, once.

        With ``on_error="continue"``, the table holds the listings that did not fail; read
        `failures` afterwards.

        Raises:
            ImportError: pyarrow is not installed; raised before any request.
            RuntimeError: the fan-out was already iterated.
        """
        rows = ArrowRows()
        pages = ((str(ref), jobs) async for ref, jobs in self.pages())
        async with self, contextlib.aclosing(pages):
            return await rows.gather(pages)

    def stop(self, ref: FunctionRef | str | tuple[str, str]) -> None:
        """End one listing now: no more of its jobs are handed out, and it counts as done.

        Its producer stops before its next request; pages of it already on their way are
        dropped.
        """
        listing = FunctionRef.parse(ref)
        if listing not in self._listing_ids:
            raise ValueError(f"{listing} is not among this fan-out's functions")
        self._stopped.add(listing)
        self._done.add(listing)
        if listing == self._ref:
            self._fold()

    def _delivered_now(self) -> Checkpoint | None:
        """The current listing's checkpoint after what its current page has handed out, if any."""
        if not self._next or self._current is None:
            return None
        return self._current.checkpoint_after(self._next)

    def _fold(self) -> None:
        delivered = self._delivered_now()
        if delivered is not None:
            self._delivered[self._ref] = delivered
        self._current, self._page, self._next = None, [], 0

    @property
    def checkpoints(self) -> dict[str, Checkpoint | Literal["done"]]:
        """Where each listing stands, for ``resume=`` of another call over the same functions.

        Keyed by ``"owner/name"``: ``"done"`` for a listing delivered to its end, otherwise the
        checkpoint after its last job handed to you (or the one it was resumed from). Listings
        nothing was read from are absent: a resume starts them from the beginning. JSON-ready.
        """
        states = {}
        for ref in self.refs:
            state = self.checkpoint_of(ref)
            if state is not None:
                states[str(ref)] = state
        return states

    def checkpoint_of(self, ref: FunctionRef) -> Checkpoint | Literal["done"] | None:
        """One listing's entry of `checkpoints`, or ``None`` if nothing was read from it."""
        if ref in self._done:
            return DONE
        current = self._delivered_now() if ref == self._ref else None
        return current or self._delivered.get(ref) or self._resume.get(ref)

    async def _end(self) -> NoReturn:
        await self.aclose()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopAsyncIteration

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def aclose(self) -> None:
        """Stop every listing at once and wait until nothing is left running. Idempotent."""
        self._finished = True
        self._fold()
        with anyio.CancelScope(shield=True):
            if self._runner is not None:
                await cancel_and_wait([self._runner])
            for stream in (self._send, self._receive):
                if stream is not None:
                    stream.close()

    async def _run(self, send: MemoryObjectSendStream[Batch]) -> None:
        requests = _Slots(self._sender, anyio.CapacityLimiter(self.concurrency))
        # Two open listings per request slot: a listing's pages are sequential, so while one
        # listing decodes and hands over its page, another has its next request ready for the
        # freed slot. More would only hold more pages in memory (measured: 2 is the best).
        open_listings = anyio.Semaphore(2 * self.concurrency)
        try:
            async with send, anyio.create_task_group() as group:
                for ref in self.refs:
                    if ref not in self._done:
                        group.start_soon(self._produce, ref, send, requests, open_listings)
        except BaseExceptionGroup as group_error:
            self._error = _first_error(group_error)
        except Exception as error:  # pragma: no cover - task groups raise groups
            self._error = error

    async def _produce(
        self,
        ref: FunctionRef,
        send: MemoryObjectSendStream[Batch],
        requests: Sender,
        open_listings: anyio.Semaphore,
    ) -> None:
        async with open_listings:
            paginator = self._listing(ref, requests, self._resume.get(ref))
            try:
                async for page in paginator.pages():
                    if ref in self._stopped:
                        return
                    await send.send((ref, page))
            except SieveError as error:
                if self.on_error == "raise":
                    raise
                # Handled: the caller asked to continue and reads `failures`, so not a warning.
                logger.info("listing %s failed: %s", ref, error)
                self.failures.append((ref, error))
                return
            finally:
                await paginator.aclose()
            self.completed.append(ref)
            await send.send((ref, None))


async def _receive_or_none(receive: MemoryObjectReceiveStream[Batch]) -> Batch | None:
    """The next batch, or ``None`` once the stream has ended or was closed."""
    try:
        return await receive.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        return None


class _FanOutPages:
    """``async for ref, jobs in fan_out.pages()``."""

    def __init__(self, fan_out: FanOut) -> None:
        self._fan_out = fan_out

    def __aiter__(self) -> _FanOutPages:
        return self

    async def __anext__(self) -> tuple[FunctionRef, list[Job]]:
        return await self._fan_out._next_page()


class _Slots:
    """The fan-out's `Sender`: ``concurrency`` requests in flight for the whole call.

    A slot is held per attempt, not across a retry's wait. When another listing waits for the
    slot just freed, this one yields once before it decodes its page, so the waiting request is
    sent first and the slot idles for one step rather than for a decode.
    """

    __slots__ = ("_inner", "_limiter")

    def __init__(self, inner: Sender, limiter: anyio.CapacityLimiter) -> None:
        self._inner = inner
        self._limiter = limiter

    async def send(self, request: Request) -> Response:
        async with Held(self._limiter):
            response = await self._inner.send(request)
            handing_over = self._limiter.statistics().tasks_waiting > 0
        if handing_over:
            await anyio.lowlevel.checkpoint()
        return response
