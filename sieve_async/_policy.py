"""The response policy, without I/O: what an answer means, where a redirect may go, how long to
wait before another attempt, and what of the server's text may reach a message.

`classify` turns a `Response` into the decoded page, or raises `Retry` (another attempt, perhaps
after a wait the server asked for), or raises the error of our tree. `redirect` decides whether
and how a redirect is followed. `backoff` is the wait before attempt ``n``. `Redactor` keeps the
API key out of everything the server sent back. The transport drives these; nothing here sends,
sleeps or reads a clock except `parse_retry_after` when it is not given ``now``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import orjson
from yarl import URL

from ._exceptions import (
    EXCERPT_BYTES,
    SieveAPIError,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
    SieveError,
    api_error_for_status,
)
from ._http import Request, Response, safe_url

T = TypeVar("T")
logger = logging.getLogger("sieve_async")

#: Statuses worth another attempt (docs/DESIGN.md, "Transport rules").
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS: Final = 5
_REDACTED = "[redacted]"
#: How deep a chain of causes is copied before the rest is dropped.
_MAX_CHAIN = 16


class Retry(Exception):
    """Another attempt is worth making: ``error`` is what this one got, ``wait`` the seconds the
    server asked for (``None``: no hint, back off as usual)."""

    def __init__(self, error: SieveError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def classify(response: Response, decode: Callable[[int, bytes], T], redact: Redactor) -> T:
    """The decoded page of a 2xx answer; otherwise raise `Retry` or the error of our tree."""
    status = response.status
    if status >= 400:
        error = api_error_for_status(
            status, _error_detail(redact(response.body)), safe_url(response.url)
        )
        if status in RETRY_STATUSES:
            raise Retry(error, parse_retry_after(response.headers.get("Retry-After")))
        raise error
    if not 200 <= status < 300:
        raise SieveAPIError(
            f"HTTP {status} from {safe_url(response.url)}: unexpected status",
            status=status,
            request_url=safe_url(response.url),
        )
    try:
        return decode(status, response.body)
    except SieveDecodeError as error:
        # The excerpt is cut again from the redacted body, which only this frame holds.
        redact.scrub(error, response.body)
        if error.retryable:
            raise Retry(error) from None
        raise


def redirect(response: Response, request: Request, origin: URL, redact: Redactor) -> Request | None:
    """The request that follows ``response``, or ``None`` when it is not a redirect.

    The target must be an absolute http(s) URL (relative to the request is fine), never https to
    plain http; off ``origin`` it is followed without the API key, since aiohttp would forward
    ``X-API-Key`` (it strips only ``Authorization``). The query is the target's own.
    """
    if response.status not in REDIRECT_STATUSES:
        return None
    url = request.url
    location = response.headers.get("Location", "").strip()
    try:
        target = url.join(URL(location))
        target_origin = target.origin()
        usable = bool(location) and target.scheme in ("http", "https") and bool(target.host)
    except ValueError as exc:
        # yarl refuses a bad address or port, idna a bad host, origin() a non-absolute URL
        usable, reason = False, f" ({exc})"
    else:
        reason = ""
    if not usable:
        raise SieveConnectionError(
            f"HTTP {response.status} from {safe_url(url)}: cannot follow the redirect to "
            f"{location!r}{reason}; the server must send an http(s) URL in Location"
        )
    if target.scheme == "http" and url.scheme == "https":
        raise SieveConnectionError(
            f"refusing a redirect from https to plain http ({safe_url(target)})"
        )
    headers = request.headers
    if target_origin != origin:
        headers = {k: v for k, v in headers.items() if k.lower() != "x-api-key"}
        logger.warning(
            "redirected to another origin %s; following without the API key",
            redact(str(target_origin)),
        )
    return Request(target, None, headers)


def backoff(
    attempt: int,
    asked: float | None,
    *,
    initial: float,
    maximum: float,
    retry_after_max: float,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    What the server asked for (``Retry-After``), up to ``retry_after_max``; otherwise
    ``initial`` doubled per attempt plus up to ``initial`` of jitter, at most ``maximum``.
    """
    if asked is not None:
        return min(asked, retry_after_max)
    return min(maximum, initial * 2.0 ** (attempt - 1) + random.uniform(0, initial))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date.

    RFC 9110 §10.2.3; a date in the past means no wait, and an unreadable value means no hint.
    A date beyond what ``datetime`` holds, or an infinite delay, is no hint either; a date that is
    merely far off is returned as it is, for the caller to cap.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        target = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, target - current)


def _is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and for an address in 127.0.0.0/8 or ``::1``: a name that merely
    starts like one (``127.evil.com``) resolves wherever its owner likes."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, *, allow_insecure_http: bool) -> URL:
    """Parse the base URL, refusing plain HTTP to anything but loopback unless allowed."""
    url = URL(base_url.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise SieveConfigError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if url.user or url.password or url.query_string or url.fragment:
        raise SieveConfigError(
            "base_url must not carry credentials, a query or a fragment; pass the key as api_key"
        )
    if url.scheme == "http" and not _is_loopback(url.host) and not allow_insecure_http:
        raise SieveConfigError(
            f"refusing plain http:// to {url.host}: the API key would travel unencrypted. "
            "Use https://, or pass allow_insecure_http=True if you really mean it"
        )
    return url


class Redactor:
    """Replaces the API key with ``[redacted]`` in whatever the server sent back.

    A server may echo the key in an error ``detail``, a body, a header or a redirect target; it
    is searched for as sent, percent-encoded (a URL) and escaped (the ``repr`` of a body).
    """

    __slots__ = ("_bytes", "_texts")

    def __init__(self, secret: str) -> None:
        raw = secret.encode()
        encoded = quote(secret, safe="")
        # yarl requotes a URL it parses, leaving what each part allows (a "/" in a query) as
        # it is: a key quoted in a redirect target comes back in that part's form.
        parsed = URL(f"http://h/{encoded}?{encoded}#{encoded}")
        url_forms = {parsed.raw_path[1:], parsed.raw_query_string, parsed.raw_fragment}
        texts = {secret, encoded, *url_forms, repr(secret)[1:-1], repr(raw)[2:-1]}
        # Longest first, so a form that contains another is replaced whole.
        self._texts = sorted(texts, key=len, reverse=True)
        self._bytes = sorted({raw, quote(secret, safe="").encode()}, key=len, reverse=True)

    def __call__(self, value: Any) -> Any:
        """``value`` with the key replaced, looking into strings, bytes, lists and dicts."""
        if isinstance(value, str):
            for form in self._texts:
                value = value.replace(form, _REDACTED)
            return value
        if isinstance(value, bytes):
            for raw in self._bytes:
                value = value.replace(raw, _REDACTED.encode())
            return value
        if isinstance(value, list | tuple):
            return type(value)(self(item) for item in value)
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        return value

    def scrub(self, error: SieveError, body: bytes | None = None) -> SieveError:
        """Redact ``error``'s message and attributes in place and detach its causes.

        ``body`` is the response an excerpt in the error was cut from: the excerpt is cut again
        from the redacted body, so no part of a key at the cut survives.
        """
        if body is not None and isinstance(error, SieveDecodeError) and error.body_start:
            excerpt = self(body)[: len(error.body_start)]
            error.message = error.message.replace(repr(error.body_start), repr(excerpt))
            error.body_start = excerpt
        self._scrub(error, {id(error): error}, _MAX_CHAIN)
        return error

    def _scrub(self, error: SieveError, copies: dict[int, BaseException], depth: int) -> None:
        for name, value in vars(error).items():
            setattr(error, name, self(value))
        error.args = self(error.args)
        error.__cause__ = self._detached(error.__cause__, copies, depth - 1)
        error.__context__ = self._detached(error.__context__, copies, depth - 1)

    def _detached(
        self, exc: BaseException | None, copies: dict[int, BaseException], depth: int
    ) -> BaseException | None:
        # aiohttp's errors may hold the request with its headers, orjson's the whole body: a
        # cause is chained as a copy that keeps only its type, redacted text and traceback.
        if exc is None or depth <= 0:
            return None
        if isinstance(exc, _ForeignError):
            return exc  # detached already
        if isinstance(exc, Retry):
            exc = exc.error
        if id(exc) in copies:
            return copies[id(exc)]
        if isinstance(exc, SieveError):
            copies[id(exc)] = exc
            self._scrub(exc, copies, depth)
            return exc
        copy = _ForeignError(f"{type(exc).__module__}.{type(exc).__qualname__}: {self(str(exc))}")
        copies[id(exc)] = copy
        copy.__cause__ = self._detached(exc.__cause__, copies, depth - 1)
        copy.__context__ = self._detached(exc.__context__, copies, depth - 1)
        copy.__suppress_context__ = exc.__suppress_context__
        return copy.with_traceback(exc.__traceback__)


class _ForeignError(Exception):
    """Stands in a chain of causes for an exception of aiohttp or orjson: its type and text."""


def _error_detail(body: bytes) -> Any:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:EXCERPT_BYTES].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(document, dict) and "detail" in document:
        return document["detail"]
    return document
