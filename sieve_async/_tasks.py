"""Background work owned by a client: spawned here, cancelled and awaited when the client closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any, Self, TypeVar

from ._exceptions import SieveClosedError

__all__ = ["TaskRegistry", "cancel_and_wait"]

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
