"""The client's task registry closes even when a task finished a moment ago."""

from __future__ import annotations

import asyncio

import pytest

from sieve_async._tasks import TaskRegistry

pytestmark = pytest.mark.anyio


async def test_aclose_right_after_a_task_finished() -> None:
    """A finished task whose done callbacks have not run yet does not make aclose spin."""
    registry = TaskRegistry()

    async def quick() -> int:
        return 1

    task = registry.spawn(quick())
    await asyncio.sleep(0)  # the task finishes; its done callbacks are only scheduled
    assert task.done()
    assert len(registry) == 1
    closing = registry.aclose()
    with pytest.raises(StopIteration):
        closing.send(None)  # finishes without needing the loop
    assert len(registry) == 0
