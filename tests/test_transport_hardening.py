"""The transport against hostile or broken servers: decoded byte cap, the key kept secret, strict
loopback, unusable redirects and Retry-After values, all ending in the SieveError tree."""

from __future__ import annotations

import gzip
import logging
import shutil
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sieve_async import (
    SieveAuthenticationError,
    SieveClient,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
    SieveError,
    SieveNotFoundError,
)
from sieve_async._transport import parse_retry_after
from sieve_async.testing import FakeSieve, Faults

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


# -- 2. the key never leaks -------------------------------------------------------------------


async def test_error_detail_quoting_the_key_is_redacted() -> None:
    """A 401 whose detail quotes the key: the key is in no message, repr, attribute or cause."""

    async def unauthorised(request: web.Request) -> web.Response:
        key = request.headers["X-API-Key"]
        return web.json_response(
            {"detail": f"API key {key} is revoked", "extra": [key]}, status=401
        )

    async with app_server({JOBS: unauthorised}) as url:
        error = await failure(url)
    assert type(error) is SieveAuthenticationError
    assert "is revoked" in str(error)
    assert "[redacted]" in error.detail
    assert_key_absent(error)


async def test_structured_detail_quoting_the_key_is_redacted() -> None:
    """A 422 whose validation detail holds the key in a nested value is redacted throughout."""

    async def invalid(request: web.Request) -> web.Response:
        key = request.headers["X-API-Key"]
        detail = [{"loc": ["header", key], "msg": f"bad {key}", "input": {key: key}}]
        return web.json_response({"detail": detail}, status=422)

    async with app_server({JOBS: invalid}) as url:
        error = await failure(url)
    assert_key_absent(error)


async def test_non_json_body_echoing_the_headers_is_redacted() -> None:
    """A 200 body that echoes the request headers, not JSON: no trace of the key in the
    SieveDecodeError or anything chained to it."""

    async def echo(request: web.Request) -> web.Response:
        lines = [f"{name}: {value}" for name, value in request.headers.items()]
        return web.Response(text="\n".join(lines))

    async with app_server({JOBS: echo}) as url:
        error = await failure(url, max_retries=1)
    assert type(error) is SieveDecodeError
    assert b"[redacted]" in error.body_start
    assert_key_absent(error)


async def test_key_cut_by_the_body_excerpt_is_redacted() -> None:
    """A key that straddles the end of the quoted excerpt leaves no part of itself in it."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="x" * 190 + request.headers["X-API-Key"])

    async with app_server({JOBS: echo}) as url:
        error = await failure(url, max_retries=0)
    assert isinstance(error, SieveDecodeError)
    assert KEY[:10].encode() not in error.body_start
    assert KEY[:10] not in str(error)


async def test_redirect_target_quoting_the_key_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Location that quotes the key never puts it in request_url, a message or a log."""
    caplog.set_level(logging.DEBUG)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/gone?token={request.headers['X-API-Key']}")

    async def gone(request: web.Request) -> web.Response:
        return web.json_response({"detail": "Not Found"}, status=404)

    async with app_server({JOBS: moved, "/gone": gone}) as url:
        error = await failure(url)
    assert type(error) is SieveNotFoundError
    assert "[redacted]" in error.request_url
    assert_key_absent(error)
    for record in client_records(caplog):
        assert KEY not in record.getMessage()


async def test_retry_logs_never_carry_the_key(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry is logged once, at INFO, describing the failure without the key."""
    caplog.set_level(logging.DEBUG)

    async def busy(request: web.Request) -> web.Response:
        return web.json_response(
            {"detail": f"slow down, {request.headers['X-API-Key']}"},
            status=429,
            headers={"Retry-After": "0"},
        )

    async with app_server({JOBS: busy}) as url:
        error = await failure(url, max_retries=2)
    assert error.attempts == 3
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [(r.name, r.levelno) for r in retries] == [("sieve_async", logging.INFO)] * 2
    assert "HTTP 429" in retries[0].getMessage()
    assert "attempt 2 of 3" in retries[1].getMessage()
    for record in client_records(caplog):
        assert KEY not in record.getMessage()
        assert KEY not in repr(vars(record))
    assert_key_absent(error)


async def test_protocol_error_does_not_chain_the_request_headers() -> None:
    """A response header longer than aiohttp accepts: SieveConnectionError, and the aiohttp
    error holding the request (and its headers) is not chained as it is."""

    async def huge_header(request: web.Request) -> web.Response:
        return web.Response(text="[]", headers={"X-Padding": "p" * 20_000})

    async with app_server({JOBS: huge_header}) as url:
        error = await failure(url, max_retries=1)
    assert type(error) is SieveConnectionError
    assert error.attempts == 2
    assert "ClientResponseError" in str(error)
    assert error.__cause__ is not None
    assert_key_absent(error)


async def test_refused_connection_chain_is_clean() -> None:
    """Nothing listening: the chained cause names the aiohttp error and carries no key."""
    async with app_server({}) as url:
        pass
    error = await failure(url, max_retries=0)
    assert type(error) is SieveConnectionError
    assert str(error.__cause__).startswith("aiohttp.client_exceptions.ClientConnectorError: ")
    assert_key_absent(error)


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


# -- 5. redirects and Retry-After the transport cannot use ------------------------------------


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "mailto:x@y", "http://[bad", "", "https://", "//:80",
     "http://127.0.0.1:99999/", "javascript:alert(1)"],
)  # fmt: skip
async def test_unusable_redirect_is_connection_error(location: str) -> None:
    """A redirect whose Location cannot be followed: SieveConnectionError, not retried."""
    hits = 0

    async def moved(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=302, headers={"Location": location})

    async with app_server({JOBS: moved}) as url:
        error = await failure(url)
    assert type(error) is SieveConnectionError
    assert "redirect" in str(error)
    assert hits == 1
    assert_key_absent(error)


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Fri, 31 Dec 9999999999999999999999 23:59:59 GMT",
        "Fri, 31 Dec 9999 23:59:59 -2359",
        "1e400",
        "inf",
        "nan",
    ],
)
async def test_absurd_retry_after_is_capped(value: str) -> None:
    """A Retry-After far in the future, or beyond any date, waits at most retry_after_max."""
    faults = Faults(schedule={0: "429"}, retry_after=value)
    async with (
        FakeSieve(functions={"sieve/a": 5}, faults=faults) as fake,
        SieveClient(api_key=fake.api_key, base_url=fake.url, retry_after_max=0.01, **FAST) as sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "a").collect()
    assert len(jobs) == 5
    assert [record.status for record in fake.requests] == [429, 200]


def test_parse_retry_after_never_raises() -> None:
    """Out-of-range dates are a hint to wait long (capped later) or no hint; never an error."""
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=0.0) == 253402300799.0
    assert parse_retry_after("Fri, 31 Dec 9999999999999999999999 23:59:59 GMT") is None
    assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("inf") is None


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a throwaway self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("openssl is needed to make a test certificate")
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_https_to_http_redirect_is_refused(tls_context: ssl.SSLContext) -> None:
    """An https server redirecting to plain http is refused; the http server sees nothing."""
    plain_hits = 0

    async def plain(request: web.Request) -> web.Response:
        nonlocal plain_hits
        plain_hits += 1
        return web.json_response([])

    async with app_server({JOBS: plain}) as plain_url:

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(plain_url + JOBS)

        async with app_server({JOBS: moved}, ssl_context=tls_context) as tls_url:
            connector = aiohttp.TCPConnector(ssl=False)
            async with aiohttp.ClientSession(connector=connector) as session:
                error = await failure(tls_url, session=session)
    assert type(error) is SieveConnectionError
    assert "plain http" in str(error)
    assert plain_hits == 0


# -- 6. other ways out of the tree ------------------------------------------------------------


async def test_session_raising_for_status_still_maps_statuses() -> None:
    """A session made with raise_for_status=True still yields the status's own error, once."""
    async with (
        FakeSieve() as fake,
        aiohttp.ClientSession(raise_for_status=True) as session,
        SieveClient(api_key=fake.api_key, base_url=fake.url, session=session) as sieve,
    ):
        with pytest.raises(SieveNotFoundError):
            await sieve.list_function_jobs("sieve", "nope").collect()
    assert len(fake.requests) == 1


async def test_closed_session_is_config_error() -> None:
    """A session passed in and closed before use is a SieveConfigError, not a RuntimeError."""
    async with FakeSieve() as fake:
        session = aiohttp.ClientSession()
        await session.close()
        async with SieveClient(api_key=fake.api_key, base_url=fake.url, session=session) as sieve:
            with pytest.raises(SieveConfigError, match="session"):
                await sieve.list_function_jobs("sieve", "retalker").collect()
    assert fake.requests == []


async def test_undecodable_content_encoding_says_so() -> None:
    """A body whose Content-Encoding does not match its bytes is a SieveConnectionError that
    names the encoding, not a "cut short" body."""

    async def broken(request: web.Request) -> web.Response:
        return web.Response(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    async with app_server({JOBS: broken}) as url:
        error = await failure(url, max_retries=0)
    assert type(error) is SieveConnectionError
    assert "gzip" in str(error)
    assert_key_absent(error)
