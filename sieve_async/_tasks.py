"""Background work owned by a client: spawned here, cancelled and awaited when the client closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any, Self, TypeVar

import anyio

from ._exceptions import SieveClosedError

__all__ = ["AsyncClosable", "Held", "TaskRegistry", "cancel_and_wait"]

T = TypeVar("T")


def _mark_retrieved(task: asyncio.Task[Any]) -> None:
    # Whoever owns the task awaits it and sees the error; reading it here only stops asyncio
    # from logging "exception was never retrieved" for a task its owner dropped.
    if not task.cancelled():
        task.exception()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has finished, swallowing their outcomes."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(BaseException):
            await task


class TaskRegistry:
    """The set of tasks running on behalf of one client."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start ``coro`` as a task this registry will cancel on `aclose`."""
        if self.closed:
            coro.close()
            raise SieveClosedError("the client is closed; create a new SieveClient")
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_mark_retrieved)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel every task still running and wait for all of them."""
        self.closed = True
        # A task cancelled here may spawn nothing new (the registry is closed), but one that
        # finished between checks still sits in the set until its callback runs.
        while pending := [task for task in self._tasks if not task.done()]:
            await cancel_and_wait(pending)
        self._tasks.clear()


class AsyncClosable:
    """``async with x:`` closes ``x`` on the way out, whatever happened inside."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Held:
    """``async with Held(limiter)``: ``async with limiter`` that does not yield to the event
    loop when a token is free.

    anyio's ``acquire`` yields even then. Between freeing a request slot and sending, that
    let a whole page's decoding run first, and the slot sat idle meanwhile (about 1 ms per
    request, measured at concurrency 1).
    """

    __slots__ = ("_limiter",)

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._limiter.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._limiter.release()
