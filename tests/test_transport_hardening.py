"""The transport against hostile or broken servers: decoded byte cap, the key kept secret, strict
loopback, unusable redirects and Retry-After values, all ending in the SieveError tree."""

from __future__ import annotations

import gzip
import logging
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from sieve_async import (
    SieveClient,
    SieveConfigError,
    SieveDecodeError,
    SieveError,
)

pytestmark = pytest.mark.anyio

KEY = "sk-live-7f3a9c0e5b1d"
JOBS = "/v2/functions/sieve/a/jobs"
FAST: dict[str, Any] = {"retry_wait_initial": 0.001, "retry_wait_max": 0.01}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def app_server(
    routes: dict[str, Handler], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """A purpose-written aiohttp.web app on a loopback port; yields its origin."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def failure(base_url: str, **options: Any) -> SieveError:
    """The error that listing ``sieve/a`` ends in."""
    async with SieveClient(api_key=KEY, base_url=base_url, **{**FAST, **options}) as sieve:
        with pytest.raises(SieveError) as caught:
            await sieve.list_function_jobs("sieve", "a").collect()
    return caught.value


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and everything reachable through ``__cause__`` and ``__context__``."""
    pending, seen = [error], set()
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]


def assert_key_absent(error: BaseException) -> None:
    for exc in chain(error):
        for text in (str(exc), repr(exc), repr(vars(exc)), repr(exc.args)):
            assert KEY not in text, f"{type(exc).__name__} carries the key: {text[:300]}"


def client_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records of the client side: the test server's access log quotes what it was sent."""
    return [record for record in caplog.records if record.name != "aiohttp.access"]


# -- 1. the byte cap counts decoded bytes ----------------------------------------------------

BOMB_BYTES = 50 << 20


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """A valid empty JSON array padded with 50 MiB of spaces, gzip- and deflate-encoded."""
    document = b"[" + b" " * BOMB_BYTES + b"]"
    return {"gzip": gzip.compress(document, 9), "deflate": zlib.compress(document, 9)}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_compression_bomb_is_capped_by_decoded_size(
    bombs: dict[str, bytes], encoding: str, framing: str
) -> None:
    """A small encoded body inflating to 50 MiB is refused at a 1 MiB cap, with or without
    Content-Length."""
    body = bombs[encoding]
    assert len(body) < (1 << 20) // 4

    async def bomb(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        if framing == "content-length":
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 4096):
            await response.write(body[start : start + 4096])
        await response.write_eof()
        return response

    async with app_server({JOBS: bomb}) as url:
        error = await failure(url, max_response_bytes=1 << 20, max_retries=0)
    assert type(error) is SieveDecodeError
    assert "max_response_bytes" in str(error)


async def test_chunked_body_over_the_cap_is_refused() -> None:
    """A plain chunked body (no Content-Length) longer than the cap is refused."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"[")
        for _ in range(64):
            await response.write(b" " * 4096)
        await response.write(b"]")
        await response.write_eof()
        return response

    async with app_server({JOBS: chunked}) as url:
        error = await failure(url, max_response_bytes=100_000, max_retries=0)
    assert type(error) is SieveDecodeError
    assert "max_response_bytes" in str(error)


async def test_encoded_body_under_the_cap_is_read() -> None:
    """A gzip page whose decoded size is under the cap decodes as usual."""
    page = b'{"data": [{"id": "j1"}], "next_offset": -1}'

    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(page), headers={"Content-Encoding": "gzip"})

    async with (
        app_server({JOBS: gzipped}) as url,
        SieveClient(api_key=KEY, base_url=url, max_response_bytes=len(page)) as sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "a").collect()
    assert [job.id for job in jobs] == ["j1"]


# -- 3. a key with control characters --------------------------------------------------------


@pytest.mark.parametrize("bad", ["\r\n", "\n", "\r", "\x00", "\t", "\x1b", "\x7f", "\x85"])
def test_key_with_control_character_is_refused(bad: str) -> None:
    """A key with a control character inside is refused at construction, without echoing it."""
    key = f"sk-{bad}X-Injected: yes"
    with pytest.raises(SieveConfigError, match="control character") as caught:
        SieveClient(api_key=key, base_url="http://127.0.0.1:9")
    assert "X-Injected" not in str(caught.value)
    assert "X-Injected" not in repr(caught.value)


def test_key_with_control_character_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check applies to SIEVE_API_KEY."""
    monkeypatch.setenv("SIEVE_API_KEY", "sk-a\nb")
    with pytest.raises(SieveConfigError, match="SIEVE_API_KEY"):
        SieveClient(base_url="http://127.0.0.1:9")


# -- 4. loopback is an address, not a prefix ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.evil.com", "http://127.0.0.1.evil.com", "http://localhost.evil.com",
     "http://127.0.0.1.nip.io:8080", "http://[::2]", "http://128.0.0.1"],
)  # fmt: skip
def test_plain_http_to_look_alike_of_loopback_is_refused(url: str) -> None:
    """Hosts that only look like loopback are refused over plain http."""
    with pytest.raises(SieveConfigError, match="unencrypted"):
        SieveClient(api_key="k", base_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.2", "http://127.255.255.254:81", "http://[::1]:8080", "http://localhost"],
)
def test_plain_http_to_loopback_is_accepted(url: str) -> None:
    """Any address of 127.0.0.0/8, ::1 and ``localhost`` are loopback."""
    assert SieveClient(api_key="k", base_url=url).base_url == url
