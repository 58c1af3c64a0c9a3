"""The one error tree of sieve_async.

```
SieveError
├── SieveConfigError            bad configuration, found before any request (missing key, bad URL)
├── SieveClosedError            the client was used after it was closed
├── SieveAPIError               the server answered with an error status
│   ├── SieveAuthenticationError    401
│   ├── SievePermissionError        403
│   ├── SieveNotFoundError          404
│   ├── SieveInvalidRequestError    400, 422
│   ├── SieveRateLimitError         429
│   └── SieveServerError            5xx
├── SieveConnectionError        no usable answer: refused, reset, truncated body
│   └── SieveTimeoutError
├── SieveDecodeError            an answer that is not the JSON we expect
└── SievePaginationError        the server sent a window that would loop or go backwards
```

Messages never carry the API key: URLs are kept without credentials, headers are never rendered,
and the transport redacts the key from whatever the server sent back (a ``detail``, a body
excerpt, a redirect target) before it reaches a message, an attribute or a log record. A cause
from aiohttp or orjson is chained as a copy that keeps only its type and redacted text, since the
original may hold the request's headers or the whole body.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

#: How many bytes of a body, or of a malformed item, an error message quotes.
EXCERPT_BYTES: Final = 200


def excerpt(value: Any) -> bytes:
    """The first bytes of ``value`` as JSON (of its ``repr`` where it is not JSON), to quote."""
    try:
        return orjson.dumps(value, default=repr)[:EXCERPT_BYTES]
    except TypeError:
        return repr(value).encode()[:EXCERPT_BYTES]


class SieveError(Exception):
    """Base class of every error raised by sieve_async."""

    attempts: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        if self.attempts is not None and self.attempts > 1:
            return f"{self.message} (gave up after {self.attempts} attempts)"
        return self.message


class SieveConfigError(SieveError):
    """The client is misconfigured: no API key, or a base URL we refuse to use."""


class SieveClosedError(SieveError):
    """The client was used after `SieveClient.aclose` (or after its ``async with`` block ended)."""


class SieveAPIError(SieveError):
    """The server answered with an HTTP error status.

    Attributes:
        status: the HTTP status code.
        detail: the server's ``detail`` (a string, or FastAPI's list of validation errors).
        request_url: the URL that was requested, without credentials.
    """

    def __init__(
        self, message: str, *, status: int, detail: Any = None, request_url: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.request_url = request_url


class SieveAuthenticationError(SieveAPIError):
    """401: the API key is missing, wrong or revoked."""


class SievePermissionError(SieveAPIError):
    """403: the key is valid but may not read this resource."""


class SieveNotFoundError(SieveAPIError):
    """404: no such function, version or job (or not visible to this key)."""


class SieveInvalidRequestError(SieveAPIError):
    """400 or 422: the server rejected the request's parameters."""


class SieveRateLimitError(SieveAPIError):
    """429: too many requests, still refused after the configured retries."""


class SieveServerError(SieveAPIError):
    """5xx: the server failed, still failing after the configured retries."""


class SieveConnectionError(SieveError):
    """No usable response: connection refused or reset, or a body cut short."""


class SieveTimeoutError(SieveConnectionError):
    """The request did not complete within the client's timeout."""


class SieveDecodeError(SieveError):
    """The body is not the JSON we expect.

    Attributes:
        status: the HTTP status of the response.
        body_start: the first bytes of the body, for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_start: bytes = b"",
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body_start = body_start
        #: A body that is not JSON at all may be a proxy's error page or a cut-short answer.
        self.retryable = retryable


class SievePaginationError(SieveError):
    """The server sent a page window that would make the listing loop or go backwards."""


_STATUS_CLASSES: dict[int, type[SieveAPIError]] = {
    400: SieveInvalidRequestError,
    401: SieveAuthenticationError,
    403: SievePermissionError,
    404: SieveNotFoundError,
    422: SieveInvalidRequestError,
    429: SieveRateLimitError,
}

_HINTS: dict[type[SieveAPIError], str] = {
    SieveAuthenticationError: "check SIEVE_API_KEY or the api_key argument",
    SievePermissionError: "this API key may not read that resource",
    SieveNotFoundError: "check the owner and function names",
    SieveRateLimitError: "lower concurrency or set rate_limit",
    SieveServerError: "the Sieve API is failing; try again later",
}


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        # FastAPI validation errors: [{"loc": [...], "msg": "...", "type": "..."}]
        parts = []
        for entry in detail:
            if isinstance(entry, dict):
                loc = ".".join(str(p) for p in entry.get("loc", []))
                parts.append(f"{loc}: {entry.get('msg', '')}".strip(": "))
            else:
                parts.append(str(entry))
        return "; ".join(parts)
    return "" if detail is None else str(detail)


def api_error_for_status(status: int, detail: Any, request_url: str) -> SieveAPIError:
    """Build the exception of our tree that stands for an HTTP error status."""
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = SieveServerError if status >= 500 else SieveAPIError
    text = _detail_text(detail)
    message = f"HTTP {status} from {request_url}"
    if text:
        message += f": {text}"
    hint = _HINTS.get(cls)
    if hint:
        message += f" ({hint})"
    return cls(message, status=status, detail=detail, request_url=request_url)
