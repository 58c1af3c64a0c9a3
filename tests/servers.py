"""Servers for tests: a purpose-written aiohttp.web app for what FakeSieve does not do, and a
FakeSieve served from a thread for clients that are not on an event loop."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from sieve_async.testing import FakeSieve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def app_server(
    routes: dict[str, Handler], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve ``routes`` (GET path -> handler) on a loopback port; yield the origin."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def send_chunked(
    request: web.Request, body: bytes, chunk: int, headers: dict[str, str]
) -> web.StreamResponse:
    """Answer ``request`` with ``body`` in chunks of ``chunk`` bytes, without a Content-Length."""
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(body), chunk):
        await response.write(body[start : start + chunk])
    await response.write_eof()
    return response


class ThreadedFake:
    """A `FakeSieve` served from a thread of its own, for a client in this thread that is not
    on an event loop (a command run in-process, a process, ``requests``). Started at once;
    `stop` (or leaving ``with``) stops it and re-raises what failed in its thread."""

    def __init__(self, fake: FakeSieve) -> None:
        self.fake = fake
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fake-sieve", daemon=True)
        self._thread.start()
        assert self._ready.wait(timeout=10), "FakeSieve did not start"
        if self._error is not None:
            raise self._error
        self.url = fake.url

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by stop() or on start
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.fake:
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "FakeSieve did not stop"
        if self._error is not None:
            raise self._error

    def __enter__(self) -> FakeSieve:
        return self.fake

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
