"""The HTTP adapter: the only module that imports aiohttp.

One request goes out, one answer comes back, and nothing else happens here: no retries, no
redirects, no status interpretation. Those are decisions of `sieve_async._policy`, driven by
`sieve_async._transport`. What a `Sender` guarantees:

- the answer's body is read whole, and never beyond ``max_response_bytes`` *decoded* bytes (a
  gzip body of a few KiB can inflate a thousandfold);
- a failure to get an answer — refused, reset, cut short, an undecodable encoding — is a
  `SieveConnectionError`, always worth another attempt, with aiohttp's error as its cause (the
  transport detaches it: it may hold the request's headers).

The time one attempt may take is the transport's to enforce (`sieve_async._transport.Timed`), so
it holds for every `Sender` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import aiohttp
import attrs
import orjson
from aiohttp import ClientSession
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from ._exceptions import (
    SieveClosedError,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
)

__all__ = [
    "Adapter",
    "AiohttpSender",
    "ClientSession",
    "Request",
    "Response",
    "Sender",
    "USER_AGENT",
    "safe_url",
]

USER_AGENT = "sieve-async/0.1"
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None)


def safe_url(url: URL) -> str:
    """``url`` as text without user or password: a redirect target might carry them."""
    return str(url.with_user(None).with_password(None))


@attrs.frozen
class Request:
    """One GET: the absolute URL, its query (``None``: the URL's own), and the headers."""

    url: URL
    params: Mapping[str, str] | None
    headers: Mapping[str, str]


@attrs.frozen
class Response:
    """One answer: status, headers, the whole body, and the URL that gave it."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: URL


class Sender(Protocol):
    """Anything that turns a `Request` into a `Response`: the aiohttp adapter, a bound around
    it, or a test double answering without sockets."""

    async def send(self, request: Request) -> Response:
        """Send ``request``; raise `SieveConnectionError` when no answer came back."""
        ...


class Adapter(Sender, Protocol):
    """The innermost `Sender`, which the client closes with itself."""

    async def aclose(self) -> None:
        """Release what sending needed (a session, a pool)."""
        ...


class AiohttpSender:
    """The `Sender` over an aiohttp session (its own, or one passed in and left open)."""

    def __init__(
        self,
        *,
        session: ClientSession | None,
        max_connections: int,
        max_response_bytes: int,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._closed = False

    async def aclose(self) -> None:
        """Close the session if this sender created it."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _get_session(self) -> ClientSession:
        if self._closed:
            raise SieveClosedError("the client is closed; create a new SieveClient")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._session = ClientSession(
                connector=connector,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        elif self._session.closed:
            raise SieveConfigError("the aiohttp session passed as session= is closed")
        return self._session

    async def send(self, request: Request) -> Response:
        session = self._get_session()
        url = request.url
        try:
            async with session.get(
                url,
                params=request.params,
                headers=request.headers,
                allow_redirects=False,
                # A session of the caller's may raise on error statuses; the policy maps them.
                raise_for_status=False,
                # The transport bounds the whole attempt; a session of the caller's may have
                # a timeout of its own, which must not cut it shorter or longer.
                timeout=_NO_TIMEOUT,
            ) as response:
                body = await self._read_body(response, url)
                return Response(response.status, response.headers, body, response.url)
        except aiohttp.ClientPayloadError as exc:
            if isinstance(exc.__cause__, ContentEncodingError):
                problem = f"could not be decoded ({exc.__cause__.message})"
            else:
                problem = "was cut short"
            raise SieveConnectionError(f"GET {safe_url(url)}: the response body {problem}") from exc
        except aiohttp.ClientError as exc:
            raise SieveConnectionError(
                f"GET {safe_url(url)} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _read_body(self, response: aiohttp.ClientResponse, url: URL) -> bytes:
        cap = self._max_response_bytes
        encoded = "Content-Encoding" in response.headers
        length = response.content_length
        if length is not None and not encoded:
            if length > cap:
                raise SieveDecodeError(
                    f"HTTP {response.status} from {safe_url(url)}: the body announces "
                    f"{length} bytes, more than the {cap}-byte cap (max_response_bytes)",
                    status=response.status,
                )
            # aiohttp stops at the announced length, which we have just checked.
            return await response.read()
        # aiohttp inflates an encoded body as it is read, and a small body can inflate a
        # thousandfold: the cap counts bytes as they come out, and stops at the first chunk over.
        chunks = []
        total = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > cap:
                raise SieveDecodeError(
                    f"HTTP {response.status} from {safe_url(url)}: the body exceeds the "
                    f"{cap}-byte cap (max_response_bytes)",
                    status=response.status,
                )
            chunks.append(chunk)
        return b"".join(chunks)
