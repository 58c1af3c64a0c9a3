"""Shared fixtures. Async tests run on asyncio (aiohttp is asyncio-only) through anyio's plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sieve_async import SieveClient
from sieve_async.testing import FakeSieve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_ambient_sieve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIEVE_API_KEY", raising=False)
    monkeypatch.delenv("SIEVE_API_URL", raising=False)


FAST_RETRIES: dict[str, Any] = {"retry_wait_initial": 0.001, "retry_wait_max": 0.01}


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``async with serve(**fake_options) as (fake, sieve)``: a FakeSieve and a client for it.

    The client reaches the server through its in-memory transport, without sockets; pass
    ``http=True`` to go through HTTP on a loopback port instead.
    """

    @asynccontextmanager
    async def serve_(
        client_options: dict[str, Any] | None = None, *, http: bool = False, **fake_options: Any
    ) -> AsyncIterator[tuple[FakeSieve, SieveClient]]:
        fake = FakeSieve(**fake_options)
        options = {**FAST_RETRIES, **(client_options or {})}
        if http:
            await fake.start()
        else:
            options["transport"] = fake.transport()
        try:
            async with SieveClient(api_key=fake.api_key, base_url=fake.url, **options) as sieve:
                yield fake, sieve
        finally:
            await fake.aclose()

    return serve_
