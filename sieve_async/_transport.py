"""The transport: one GET of the API in, the decoded page or one error of our tree out.

It drives the pieces: a `Sender` (`sieve_async._http`, the only code that touches aiohttp) wrapped
in the client-wide bound on requests in flight and the optional requests-per-second limit, and
the response policy (`sieve_async._policy`) that says what each answer means. Its own part is the
loop: follow redirects, retry what the policy calls retryable after the wait it gives, count,
log, and redact the API key from every error before it leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import anyio
from aiolimiter import AsyncLimiter
from yarl import URL

from ._exceptions import SieveConnectionError, SieveError, SieveTimeoutError
from ._http import Adapter, AiohttpSender, ClientSession, Request, Response, Sender, safe_url
from ._options import ClientOptions
from ._policy import (
    MAX_REDIRECTS,
    RETRY_STATUSES,
    Redactor,
    Retry,
    backoff,
    check_base_url,
    classify,
    parse_retry_after,
    redirect,
)
from ._tasks import Held

__all__ = [
    "RETRY_STATUSES",
    "Transport",
    "ClientStats",
    "check_base_url",
    "parse_retry_after",
]

T = TypeVar("T")
logger = logging.getLogger("sieve_async")


class ClientStats:
    """What a client has done so far, for a progress display or a log line.

    ``SieveClient.stats`` is live: the counts grow as the client works.

    Attributes:
        requests: HTTP requests sent (each attempt counts).
        retries: attempts made again after a retryable failure.
        pages: listing pages received and decoded.
    """

    __slots__ = ("pages", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.pages = 0

    def __repr__(self) -> str:
        return f"ClientStats(requests={self.requests}, retries={self.retries}, pages={self.pages})"


class Transport:
    """Sends GET requests for the client: bounded, rate-limited, retried, and decoded.

    Args:
        api_key: the key sent as ``X-API-Key``; never logged or rendered.
        base_url: the API's origin and path prefix.
        options: the checked settings (timeout, retries and their waits, bounds, byte cap).
        session: an aiohttp session to use and not close.
        adapter: what sends the requests instead of aiohttp (a test double); it then enforces
            ``max_response_bytes`` itself, if it needs to.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: URL,
        options: ClientOptions,
        session: ClientSession | None = None,
        adapter: Adapter | None = None,
    ) -> None:
        self._headers = {"X-API-Key": api_key}
        self._redact = Redactor(api_key)
        self.base_url = base_url
        self._origin = base_url.origin()
        self.options = options
        self.max_connections = options.max_connections
        self._adapter = adapter or AiohttpSender(
            session=session,
            max_connections=options.max_connections,
            max_response_bytes=options.max_response_bytes,
        )
        rate = options.rate_limit
        # A bucket of one: requests are spaced evenly rather than sent in a first burst.
        limiter = None if rate is None else AsyncLimiter(1, 1 / rate)
        #: What every request goes through: the client-wide bound, the rate, the time limit of
        #: one attempt, the adapter.
        self.sender: Sender = Bounded(
            Timed(self._adapter, options.timeout),
            anyio.CapacityLimiter(options.max_connections),
            limiter,
        )
        self.stats = ClientStats()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Transport {self.base_url} max_connections={self.max_connections}>"

    def url_for(self, path: str) -> URL:
        """The absolute URL of an already-encoded API path."""
        return URL(str(self.base_url) + path, encoded=True)

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        await self._adapter.aclose()

    async def get(
        self,
        path: str,
        params: Mapping[str, str],
        decode: Callable[[int, bytes], T],
        *,
        via: Sender | None = None,
    ) -> T:
        """GET ``path`` with ``params`` and return ``decode(status, body)`` of a 2xx answer.

        Retries what the policy calls retryable; raises the error of our tree otherwise, with the
        API key redacted from everything the server sent back. ``via`` is a sender wrapping this
        transport's `sender` (a fan-out's, holding its own bound per attempt).
        """
        self._check_loop()
        request = Request(self.url_for(path), params, self._headers)
        sender = via or self.sender
        options = self.options
        attempt = 1
        while True:
            try:
                return classify(await self._send(sender, request), decode, self._redact)
            except Retry as retry:
                if attempt > options.max_retries:
                    error = retry.error
                    break
                wait = backoff(
                    attempt,
                    retry.wait,
                    initial=options.retry_wait_initial,
                    maximum=options.retry_wait_max,
                    retry_after_max=options.retry_after_max,
                )
                cause = self._redact(str(retry.error))
                logger.info(
                    "GET %s: %s; attempt %d of %d, retrying in %.2f s",
                    safe_url(request.url),
                    cause,
                    attempt,
                    options.max_retries + 1,
                    wait,
                    # The same facts as fields, for a structured log handler.
                    extra={"retry_attempt": attempt, "retry_wait": wait, "retry_cause": cause},
                )
            except SieveError as raised:
                error = raised
                break
            self.stats.retries += 1
            attempt += 1
            await anyio.sleep(wait)
        error.attempts = attempt
        raise self._redact.scrub(error)

    def _check_loop(self) -> None:
        """Refuse a second event loop: the connections, bounds and tasks belong to the first."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is None:
            self._loop = loop
            return
        state = "closed" if self._loop.is_closed() else "still running"
        raise RuntimeError(
            f"this SieveClient was first used in another event loop (now {state}); a client, "
            "its connections and its tasks belong to one event loop. Create the client inside "
            "the coroutine that asyncio.run() runs: one client per asyncio.run() call"
        )

    async def _send(self, sender: Sender, request: Request) -> Response:
        """One attempt: send, following redirects; a failure to get an answer is a `Retry`."""
        self.stats.requests += 1
        started = time.perf_counter()
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await sender.send(request)
            except SieveConnectionError as error:
                raise Retry(self._redact.scrub(error)) from None
            follow = redirect(response, request, self._origin, self._redact)
            if follow is None:
                break
            request = follow
        else:
            raise SieveConnectionError(
                f"GET {safe_url(request.url)}: more than {MAX_REDIRECTS} redirects"
            )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "GET %s -> %d, %d bytes in %.1f ms",
                self._redact(safe_url(response.url)),
                response.status,
                len(response.body),
                (time.perf_counter() - started) * 1000,
            )
        return response


class Timed:
    """A `Sender` that gives up on an attempt after ``seconds``, whatever the sender inside."""

    __slots__ = ("_inner", "_seconds")

    def __init__(self, inner: Sender, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds

    async def send(self, request: Request) -> Response:
        try:
            with anyio.fail_after(self._seconds):
                return await self._inner.send(request)
        except TimeoutError as exc:
            raise SieveTimeoutError(
                f"GET {safe_url(request.url)} timed out after {self._seconds} s"
            ) from exc


class Bounded:
    """A `Sender` that holds a slot of ``limiter`` (and a turn of ``rate``) while it sends."""

    __slots__ = ("_inner", "_limiter", "_rate")

    def __init__(
        self, inner: Sender, limiter: anyio.CapacityLimiter, rate: AsyncLimiter | None = None
    ) -> None:
        self._inner = inner
        self._limiter = limiter
        self._rate = rate

    async def send(self, request: Request) -> Response:
        async with Held(self._limiter):
            if self._rate is not None:
                await self._rate.acquire()
            return await self._inner.send(request)
