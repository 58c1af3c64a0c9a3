"""The transport against hostile or broken servers: decoded byte cap, the key kept secret, strict
loopback, unusable redirects and Retry-After values, all ending in the SieveError tree."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import shutil
import ssl
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from servers import app_server, send_chunked
from yarl import URL

from sieve_async import (
    SieveAPIError,
    SieveAuthenticationError,
    SieveClient,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
    SieveError,
    SieveInvalidRequestError,
    SieveNotFoundError,
    SieveTimeoutError,
)
from sieve_async._transport import parse_retry_after
from sieve_async.testing import FakeSieve, Faults

pytestmark = pytest.mark.anyio

KEY = "sk-live-7f3a9c0e5b1d"
JOBS = "/v2/functions/sieve/a/jobs"
FAST: dict[str, Any] = {"retry_wait_initial": 0.001, "retry_wait_max": 0.01}


async def failure(base_url: str, **options: Any) -> SieveError:
    """The error that listing ``sieve/a`` ends in."""
    options = {"api_key": KEY, **FAST, **options}
    async with SieveClient(base_url=base_url, **options) as sieve:
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
        return await send_chunked(request, body, 4096, headers)

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


@pytest.mark.parametrize("key", ["ab+c/d==", "\\sk-7f/\u00e4%"])
@pytest.mark.parametrize("where", ["/gone?token={}", "/gone/{}"])
async def test_key_percent_encoded_in_a_redirect_target_is_redacted(key: str, where: str) -> None:
    """A redirect target quoting a key percent-encoded (a base64 key's "/" and "+" too) comes
    back from URL parsing partly decoded; no form of the key is left in the error."""
    target = where.format(quote(key, safe=""))

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    async def gone(request: web.Request) -> web.Response:
        return web.json_response({"detail": "Not Found"}, status=404)

    routes = {JOBS: moved, "/gone": gone, "/gone/{rest:.*}": gone}
    async with app_server(routes) as url:
        error = await failure(url, api_key=key)
    assert type(error) is SieveNotFoundError
    assert error.request_url == url + where.format("[redacted]")
    assert str(error).startswith(f"HTTP 404 from {url}{where.format('[redacted]')}: Not Found")


@pytest.mark.parametrize("key", ["\\sk-7f/\u00e4%", "sk-7f3a%"])
async def test_every_form_of_an_unusual_key_is_redacted_whole(key: str) -> None:
    """A key with a backslash, a "/", a non-ASCII letter or a "%": as sent in a detail,
    percent-encoded in a text body, and escaped in a quoted Location, each replaced whole."""

    async def detail(request: web.Request) -> web.Response:
        return web.json_response({"detail": f"key {key} revoked"}, status=401)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text=f"token={quote(key, safe='')}.", status=404)

    async def ftp(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": f"ftp://h/{key}"})

    errors = []
    for handler in (detail, text, ftp):
        async with app_server({JOBS: handler}) as url:
            async with SieveClient(api_key=key, base_url=url, max_retries=0) as sieve:
                with pytest.raises(SieveError) as caught:
                    await sieve.list_function_jobs("sieve", "a").collect()
            errors.append(caught.value)
    revoked, gone, moved = errors
    assert type(revoked) is SieveAuthenticationError
    assert revoked.detail == "key [redacted] revoked"
    assert type(gone) is SieveNotFoundError
    assert gone.detail == "token=[redacted]."
    assert type(moved) is SieveConnectionError
    assert "cannot follow the redirect to 'ftp://h/[redacted]'; " in str(moved), str(moved)
    for error in errors:
        for text_ in (str(error), repr(vars(error))):
            assert key not in text_
            assert quote(key, safe="") not in text_


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
    """Hosts that only look like loopback are refused over plain http, saying what to do."""
    host = URL(url).host
    with pytest.raises(SieveConfigError) as caught:
        SieveClient(api_key="k", base_url=url)
    assert str(caught.value) == (
        f"refusing plain http:// to {host}: the API key would travel unencrypted. "
        "Use https://, or pass allow_insecure_http=True if you really mean it"
    )


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.2", "http://127.255.255.254:81", "http://[::1]:8080", "http://localhost"],
)
def test_plain_http_to_loopback_is_accepted(url: str) -> None:
    """Any address of 127.0.0.0/8, ::1 and ``localhost`` are loopback."""
    assert SieveClient(api_key="k", base_url=url).base_url == url


@pytest.mark.parametrize(
    ("given", "kept"),
    [("http://127.0.0.1:9/api/", "http://127.0.0.1:9/api"),
     ("http://127.0.0.1:9/proxyX//", "http://127.0.0.1:9/proxyX"),
     ("  https://example.com/", "https://example.com")],
)  # fmt: skip
def test_base_url_loses_only_trailing_slashes(given: str, kept: str) -> None:
    """Trailing slashes are dropped from base_url, and nothing else."""
    assert SieveClient(api_key="k", base_url=given).base_url == kept


@pytest.mark.parametrize(
    "url",
    ["https://user@example.com", "https://:pw@example.com", "https://user:pw@example.com",
     "https://example.com/?a=1", "https://example.com/#top"],
)  # fmt: skip
def test_base_url_with_credentials_query_or_fragment_is_refused(url: str) -> None:
    """Each of a user, a password, a query and a fragment alone is refused."""
    with pytest.raises(
        SieveConfigError,
        match=r"^base_url must not carry credentials, a query or a fragment; pass the key as "
        r"api_key$",
    ):
        SieveClient(api_key="k", base_url=url)


@pytest.mark.parametrize("url", ["ftp://example.com", "https://", "example.com"])
def test_base_url_not_http_with_a_host_is_refused(url: str) -> None:
    """A base_url of another scheme, or without a host, is refused, quoting it."""
    with pytest.raises(
        SieveConfigError, match=re.escape(f"must be an http(s) URL with a host, got {url!r}")
    ):
        SieveClient(api_key="k", base_url=url)


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


# -- 7. retries stop at the first error no retry cures ----------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [(429, 404, SieveNotFoundError), (503, 401, SieveAuthenticationError)],
)
async def test_error_no_retry_cures_on_a_retry_ends_the_retries(
    first: int, second: int, expected: type[SieveError]
) -> None:
    """A retryable status then one no retry cures: the second answer's error, after 2 attempts,
    with retries left unused."""
    statuses = [first, second]
    served: list[int] = []

    async def flaky(request: web.Request) -> web.Response:
        status = statuses[len(served)]
        served.append(status)
        return web.json_response(
            {"detail": f"answer {len(served)}"}, status=status, headers={"Retry-After": "0"}
        )

    async with app_server({JOBS: flaky}) as url:
        error = await failure(url, max_retries=5)
    assert type(error) is expected
    assert error.status == second  # type: ignore[attr-defined]
    assert error.detail == "answer 2"  # type: ignore[attr-defined]
    assert error.attempts == 2
    assert str(error).endswith("(gave up after 2 attempts)")
    assert served == [first, second]


async def test_retry_log_describes_the_failure_and_the_wait_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each scheduled retry is logged with the redacted error that caused it and the server's
    Retry-After as the wait, even above retry_wait_max."""
    caplog.set_level(logging.INFO, logger="sieve_async")
    served = 0

    async def busy(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        if served > 2:
            return web.json_response({"data": [{"id": "j1"}], "next_offset": -1})
        return web.json_response(
            {"detail": f"slow down, {request.headers['X-API-Key']}"},
            status=429,
            headers={"Retry-After": "0.05"},
        )

    async with (
        app_server({JOBS: busy}) as url,
        SieveClient(api_key=KEY, base_url=url, max_retries=2, **FAST) as sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "a").collect()
    assert [job.id for job in jobs] == ["j1"]
    assert (sieve.stats.requests, sieve.stats.retries, sieve.stats.pages) == (3, 2, 1)
    retries = [record for record in caplog.records if hasattr(record, "retry_wait")]
    assert [record.retry_attempt for record in retries] == [1, 2]
    for record in retries:
        caused_by = record.retry_cause
        assert caused_by.startswith("HTTP 429 from http://127.0.0.1:")
        assert "slow down, [redacted] (lower concurrency or set rate_limit)" in caused_by
        assert caused_by in record.getMessage()
        assert record.retry_wait == 0.05


# -- 8. what an error answer's body becomes --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"  upstream \xff down\n", "upstream \ufffd down"),
        (b"<" + b"x" * 300, "<" + "x" * 199),
        (b" \r\n ", None),
        (b"", None),
        (b'{"detail": {"reason": "gone"}}', {"reason": "gone"}),
        (b'{"detail": null}', None),
        (b'{"message": "gone"}', {"message": "gone"}),
        (b'"no such detail"', "no such detail"),
        (b'["detail", "x"]', ["detail", "x"]),
        (b"42", 42),
    ],
)
async def test_error_body_becomes_the_detail(body: bytes, detail: Any) -> None:
    """A 404's body: its "detail" member, any other JSON as it is, or the start of the text
    (invalid UTF-8 replaced, whitespace stripped, empty as None)."""

    async def missing(request: web.Request) -> web.Response:
        return web.Response(body=body, status=404, content_type="text/plain")

    async with app_server({JOBS: missing}) as url:
        error = await failure(url)
    assert type(error) is SieveNotFoundError
    assert error.detail == detail
    assert error.attempts == 1


async def test_bad_request_is_invalid_request_error() -> None:
    """A 400, the lowest error status, is SieveInvalidRequestError with its detail, once."""
    hits = 0

    async def bad(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response({"detail": "offset must be an integer"}, status=400)

    async with app_server({JOBS: bad}) as url:
        error = await failure(url, max_retries=3)
    assert type(error) is SieveInvalidRequestError
    assert error.status == 400
    assert error.detail == "offset must be an integer"
    assert hits == 1


# -- 9. redirects followed, and how ------------------------------------------------------------


async def test_redirect_without_location_is_connection_error() -> None:
    """A 302 with no Location header at all is not followed, and says what it lacked."""
    hits = 0

    async def moved(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=302)

    async with app_server({JOBS: moved}) as url:
        error = await failure(url)
    assert type(error) is SieveConnectionError
    assert re.fullmatch(
        rf"HTTP 302 from {re.escape(url + JOBS)}(\?\S*)?: cannot follow the redirect to ''; "
        r"the server must send an http\(s\) URL in Location",
        str(error),
    ), str(error)
    assert hits == 1


async def test_unusable_redirect_message_names_the_location_and_nothing_else() -> None:
    """An absolute Location of another scheme is quoted as sent, with no reason appended."""

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "ftp://example.com/x"})

    async with app_server({JOBS: moved}) as url:
        error = await failure(url)
    assert type(error) is SieveConnectionError
    assert str(error).endswith(
        ": cannot follow the redirect to 'ftp://example.com/x'; "
        "the server must send an http(s) URL in Location"
    ), str(error)


async def test_https_redirect_within_the_origin_is_followed_with_the_key(
    tls_context: ssl.SSLContext,
) -> None:
    """An https server redirecting to another path of its own is followed, key and all."""
    keys: list[str | None] = []
    queries: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        queries.append(request.query_string)
        raise web.HTTPFound("/v2/functions/sieve/b/jobs?from=a")

    async def target(request: web.Request) -> web.Response:
        queries.append(request.query_string)
        keys.append(request.headers.get("X-API-Key"))
        return web.json_response({"data": [{"id": "j1"}], "next_offset": -1})

    async with (
        app_server({JOBS: moved, "/v2/functions/sieve/b/jobs": target}, tls_context) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session,
        SieveClient(api_key=KEY, base_url=url, session=session) as sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "a", page_size=7).collect()
    assert [job.id for job in jobs] == ["j1"]
    assert keys == [KEY]
    assert queries == ["offset=0&limit=7", "from=a"], "the Location's query replaces the request's"


async def test_redirects_through_two_other_origins_never_carry_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """front -> middle -> last, three origins: the key reaches only the front, and each hop
    to another origin is logged once with that origin."""
    caplog.set_level(logging.WARNING, logger="sieve_async")
    async with (
        FakeSieve(api_key=None) as last,
        FakeSieve(api_key=None, redirect_to=last.url) as middle,
        FakeSieve(redirect_to=middle.url) as front,
        SieveClient(api_key=front.api_key, base_url=front.url) as sieve,
    ):
        jobs = await sieve.list_function_jobs("sieve", "whisper").collect()
        assert len(jobs) == len(last.jobs("sieve/whisper"))
        assert [record.sent_api_key for record in front.requests] == [True]
        assert [record.sent_api_key for record in middle.requests] == [False]
        assert {record.sent_api_key for record in last.requests} == {False}
    warnings = [r.getMessage() for r in caplog.records if r.name == "sieve_async"]
    assert warnings == [
        f"redirected to another origin {middle.url}; following without the API key",
        f"redirected to another origin {last.url}; following without the API key",
    ]


# -- 10. how much of a chain of causes is kept -------------------------------------------------


class _FailingResolver(AbstractResolver):
    """Name lookups fail with ``error``: a caller's resolver, the one place a transport error's
    chain of causes is the caller's own."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        raise self.error

    async def close(self) -> None:
        pass


async def resolution_failure(error: OSError) -> SieveError:
    """The error a listing ends in when looking ``localhost`` up raises ``error``."""
    connector = aiohttp.TCPConnector(resolver=_FailingResolver(error))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await failure("http://localhost:9", session=session, max_retries=0)


@pytest.mark.parametrize(
    ("link", "kind"),
    [("__cause__", OSError), ("__context__", OSError), ("__context__", SieveConnectionError)],
)
async def test_long_chain_of_causes_is_cut_at_sixteen_links(
    link: str, kind: type[Exception]
) -> None:
    """A chain of 40 causes under the transport's error keeps 16 exceptions in all, the key
    redacted: others' exceptions as copies naming their type, ours as themselves."""
    top = exc = OSError(f"level 0 for {KEY}")
    for level in range(1, 40):
        setattr(exc, link, kind(f"level {level} for {KEY}"))
        exc = getattr(exc, link)

    error = await resolution_failure(top)
    assert type(error) is SieveConnectionError
    assert str(error).startswith(
        "GET http://localhost:9/v2/functions/sieve/a/jobs failed: ClientConnectorDNSError: "
    )
    dns = error.__cause__
    assert dns is not None
    assert str(dns).startswith("aiohttp.client_exceptions.ClientConnectorDNSError: ")
    assert dns.__context__ is dns.__cause__, "one cause reached twice is copied once"
    assert dns.__suppress_context__
    assert dns.__traceback__ is not None, "a copy keeps the original's traceback"
    texts = []
    exc = dns.__cause__
    while exc is not None:
        texts.append(str(exc))
        assert getattr(exc, "__cause__" if link == "__context__" else "__context__") is None
        exc = getattr(exc, link)
    prefix = "" if kind is SieveConnectionError else "builtins.OSError: "
    assert texts == ["builtins.OSError: level 0 for [redacted]"] + [
        f"{prefix}level {level} for [redacted]" for level in range(1, 14)
    ]
    assert_key_absent(error)


async def test_error_of_ours_in_a_chain_of_causes_is_redacted_in_place() -> None:
    """A SieveError met in the chain stays itself (not a copy), with the key redacted from it
    and from its own causes; one met twice stays one object."""
    inner = SieveAuthenticationError(
        f"HTTP 401: key {KEY} revoked", status=401, detail=f"key {KEY}", request_url="u"
    )
    inner.__cause__ = ValueError(f"bad {KEY}")
    inner.__context__ = RuntimeError(f"while handling {KEY}")
    top = OSError("lookup service refused us")
    top.__cause__ = inner
    top.__context__ = inner

    error = await resolution_failure(top)
    lookup = error.__cause__.__cause__  # type: ignore[union-attr]
    assert str(lookup) == "builtins.OSError: lookup service refused us"
    assert lookup.__cause__ is inner
    assert lookup.__context__ is inner
    assert inner.message == "HTTP 401: key [redacted] revoked"
    assert inner.detail == "key [redacted]"
    assert inner.args == ("HTTP 401: key [redacted] revoked",)
    assert str(inner.__cause__) == "builtins.ValueError: bad [redacted]"
    assert str(inner.__context__) == "builtins.RuntimeError: while handling [redacted]"
    assert_key_absent(error)


# -- 11. limits: redirects, body size, time, statuses ------------------------------------------


@pytest.mark.parametrize(("hops", "followed"), [(5, True), (6, False)])
async def test_at_most_five_redirects_are_followed(hops: int, followed: bool) -> None:
    """A chain of five redirects is followed to the page; a sixth is refused, not retried."""
    paths: list[str] = []

    async def hop(request: web.Request) -> web.Response:
        paths.append(request.path)
        step = int(request.match_info["step"])
        if step < hops:
            raise web.HTTPFound(f"/hop/{step + 1}")
        return web.json_response({"data": [{"id": "j1"}], "next_offset": -1})

    async def start(request: web.Request) -> web.Response:
        paths.append(request.path)
        raise web.HTTPFound("/hop/1")

    async with app_server({JOBS: start, "/hop/{step}": hop}) as url:
        if followed:
            async with SieveClient(api_key=KEY, base_url=url, **FAST) as sieve:
                jobs = await sieve.list_function_jobs("sieve", "a").collect()
            assert [job.id for job in jobs] == ["j1"]
            assert sieve.stats.requests == 1
        else:
            error = await failure(url, max_retries=3)
            assert type(error) is SieveConnectionError
            assert re.fullmatch(
                rf"GET {re.escape(url)}/hop/6: more than 5 redirects", str(error)
            ), str(error)
            assert error.attempts == 1
    assert paths == [JOBS] + [f"/hop/{step}" for step in range(1, min(hops, 5) + 1)]


def padded_page(size: int) -> bytes:
    """A last page holding job ``j1``, padded with spaces to ``size`` bytes."""
    page = b'{"data": [{"id": "j1"}], "next_offset": -1}'
    return page[:-1] + b" " * (size - len(page)) + b"}"


@pytest.mark.parametrize(("size", "cap"), [(4000, 3999), (4000, 4000)])
async def test_announced_length_is_checked_against_the_cap(size: int, cap: int) -> None:
    """A Content-Length over the cap is refused before the body is read, once, naming both
    numbers; a body exactly at the cap is read."""
    body = padded_page(size)
    hits = 0

    async def sized(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(body=body, content_type="application/json")

    async with app_server({JOBS: sized}) as url:
        await read_under_cap(
            url, size, cap, r"the body announces 4000 bytes, more than the 3999-byte cap"
        )
    assert hits == 1


async def read_under_cap(url: str, size: int, cap: int, refusal: str) -> None:
    """A body of ``size`` bytes under ``max_response_bytes=cap``: read whole when it fits,
    otherwise refused at once (not retried) with ``refusal`` in the message."""
    if size <= cap:
        async with SieveClient(api_key=KEY, base_url=url, max_response_bytes=cap, **FAST) as sieve:
            jobs = await sieve.list_function_jobs("sieve", "a").collect()
        assert [job.id for job in jobs] == ["j1"]
        return
    error = await failure(url, max_response_bytes=cap, max_retries=3)
    assert type(error) is SieveDecodeError
    assert error.status == 200
    assert error.attempts == 1
    assert re.fullmatch(
        rf"HTTP 200 from {re.escape(url + JOBS)}(\?\S*)?: {refusal} \(max_response_bytes\)",
        str(error),
    ), str(error)


@pytest.mark.parametrize(("size", "cap"), [(4000, 3999), (4000, 4000)])
async def test_body_without_length_is_counted_against_the_cap(size: int, cap: int) -> None:
    """A chunked body without Content-Length: one byte over the cap is refused, once, saying
    so; exactly at the cap is read."""
    body = padded_page(size)
    hits = 0

    async def chunked(request: web.Request) -> web.StreamResponse:
        nonlocal hits
        hits += 1
        return await send_chunked(request, body, 100, {"Content-Type": "application/json"})

    async with app_server({JOBS: chunked}) as url:
        await read_under_cap(url, size, cap, r"the body exceeds the 3999-byte cap")
    assert hits == 1


@pytest.mark.parametrize("status", [300, 304])
async def test_status_neither_page_nor_error_nor_redirect_is_api_error(status: int) -> None:
    """A 300 or 304, even with a valid page as body, is a SieveAPIError naming the status, not
    retried."""
    hits = 0

    async def odd(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=status, body=b"[]", content_type="application/json")

    async with app_server({JOBS: odd}) as url:
        error = await failure(url, max_retries=3)
    assert type(error) is SieveAPIError
    assert error.status == status
    assert re.fullmatch(
        rf"HTTP {status} from {re.escape(url + JOBS)}(\?\S*)?: unexpected status", str(error)
    ), str(error)
    assert str(error) == f"HTTP {status} from {error.request_url}: unexpected status"
    assert hits == 1


async def test_timeout_names_the_limit() -> None:
    """An attempt slower than timeout= is a SieveTimeoutError naming the URL and the limit."""
    release = asyncio.Event()

    async def stalled(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response([])

    async with app_server({JOBS: stalled}) as url:
        try:
            error = await failure(url, timeout=0.05, max_retries=1)
        finally:
            release.set()
    assert type(error) is SieveTimeoutError
    assert error.attempts == 2
    assert str(error.__cause__).startswith("builtins.TimeoutError"), str(error.__cause__)
    assert re.fullmatch(
        rf"GET {re.escape(url + JOBS)}(\?\S*)? timed out after 0\.05 s "
        r"\(gave up after 2 attempts\)",
        str(error),
    ), str(error)


async def test_each_response_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, each response is one line: the final URL, status, bytes and time taken."""
    caplog.set_level(logging.DEBUG, logger="sieve_async")
    page = b'{"data": [{"id": "j1"}], "next_offset": -1}'

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v2/functions/sieve/b/jobs")

    async def served(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)  # the server's latency, which the line must include
        return web.Response(body=page, content_type="application/json")

    async with (
        app_server({JOBS: moved, "/v2/functions/sieve/b/jobs": served}) as url,
        SieveClient(api_key=KEY, base_url=url, **FAST) as sieve,
    ):
        started = time.perf_counter()
        await sieve.list_function_jobs("sieve", "a").collect()
        elapsed_ms = (time.perf_counter() - started) * 1000
    lines = [r.getMessage() for r in caplog.records if r.name == "sieve_async"]
    assert len(lines) == 1, lines
    match = re.fullmatch(
        rf"GET {re.escape(url)}/v2/functions/sieve/b/jobs -> 200, {len(page)} bytes in "
        r"(\d+\.\d) ms",
        lines[0],
    )
    assert match, lines[0]
    assert 20.0 <= float(match[1]) <= elapsed_ms + 0.1


async def test_body_cut_short_says_so_and_chains_the_cause() -> None:
    """A body shorter than its Content-Length, every attempt: SieveConnectionError saying it
    was cut short, chained to a copy of aiohttp's payload error."""

    async def cut(request: web.Request) -> web.StreamResponse:
        body = b'{"data": [' + b'{"id": "x"},' * 64
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body) * 2
        await response.prepare(request)
        await response.write(body)
        if request.transport is not None:
            request.transport.abort()
        return response

    async with app_server({JOBS: cut}) as url:
        error = await failure(url, max_retries=1)
    assert type(error) is SieveConnectionError
    assert re.fullmatch(
        rf"GET {re.escape(url + JOBS)}(\?\S*)?: the response body was cut short "
        r"\(gave up after 2 attempts\)",
        str(error),
    ), str(error)
    assert str(error.__cause__).startswith("aiohttp.client_exceptions.ClientPayloadError: ")
