"""Shared fixtures. Async tests run on asyncio (aiohttp is asyncio-only) through anyio's plugin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from servers import app_server

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


class Payloads:
    """What `serve_payloads` answers: for each request path, the items of that listing.

    Pages are cut from the items by ``offset`` and ``limit`` and sent in ``shape`` (``envelope``:
    ``{"data": [...], "next_offset": N}``, -1 at the end; ``bare``: the array alone), as the
    standard library writes JSON, so an integer keeps every digit.
    """

    def __init__(self) -> None:
        self.items: dict[str, list[Any]] = {}
        self.shape = "envelope"

    async def handle(self, request: web.Request) -> web.Response:
        items = self.items.get(request.path)
        if items is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "500"))
        page = items[offset : offset + limit]
        end = offset + len(page) >= len(items)
        body: Any = page
        if self.shape == "envelope":
            body = {"data": page, "next_offset": -1 if end else offset + len(page)}
        return web.Response(body=json.dumps(body), content_type="application/json")


@pytest.fixture
def serve_payloads() -> Callable[..., Any]:
    """``async with serve_payloads() as (payloads, sieve)``: a client of a small aiohttp.web
    server answering every listing path with the items put in ``payloads.items[path]``."""

    @asynccontextmanager
    async def serve_() -> AsyncIterator[tuple[Payloads, SieveClient]]:
        payloads = Payloads()
        async with (
            app_server({"/{tail:.*}": payloads.handle}) as url,
            SieveClient(api_key="k", base_url=url, **FAST_RETRIES) as sieve,
        ):
            yield payloads, sieve

    return serve_
