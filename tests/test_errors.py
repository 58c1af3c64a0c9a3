"""Every class of the error tree, triggered over HTTP against FakeSieve, and the key kept secret."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sieve_async import (
    SieveAPIError,
    SieveAuthenticationError,
    SieveClient,
    SieveClosedError,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
    SieveError,
    SieveInvalidRequestError,
    SieveNotFoundError,
    SievePaginationError,
    SievePermissionError,
    SieveRateLimitError,
    SieveServerError,
    SieveTimeoutError,
)
from sieve_async.testing import DEFAULT_API_KEY, FakeSieve, Faults

pytestmark = pytest.mark.anyio


def always(kind: str) -> Faults:
    return Faults(rate=1.0, kinds=(kind,))


async def first_error(sieve: SieveClient, owner: str = "sieve", name: str = "retalker") -> Any:
    with pytest.raises(SieveError) as caught:
        await sieve.list_function_jobs(owner, name).collect()
    return caught.value


def test_missing_key_names_the_variable() -> None:
    """No key anywhere: SieveConfigError at construction, naming SIEVE_API_KEY."""
    with pytest.raises(SieveConfigError, match="SIEVE_API_KEY"):
        SieveClient()


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIEVE_API_KEY and SIEVE_API_URL configure the client when no arguments are given."""
    monkeypatch.setenv("SIEVE_API_KEY", "k-env")
    monkeypatch.setenv("SIEVE_API_URL", "http://127.0.0.1:9")
    assert SieveClient().base_url == "http://127.0.0.1:9"


async def test_wrong_key_is_authentication_error(serve: Any) -> None:
    """401 maps to SieveAuthenticationError carrying status, detail and URL."""
    async with FakeSieve() as fake, SieveClient(api_key="wrong", base_url=fake.url) as sieve:
        error = await first_error(sieve)
    assert type(error) is SieveAuthenticationError
    assert error.status == 401
    assert error.detail == "Unauthorized - valid API Key required."
    assert error.request_url.startswith(fake.url + "/v2/functions/sieve/retalker/jobs")
    assert len(fake.requests) == 1, "a 401 is never retried"


async def test_forbidden_is_permission_error(serve: Any) -> None:
    """403 maps to SievePermissionError and is not retried."""
    async with serve(faults=always("403")) as (fake, sieve):
        error = await first_error(sieve)
    assert type(error) is SievePermissionError and error.status == 403
    assert len(fake.requests) == 1


async def test_unknown_function_is_not_found(serve: Any) -> None:
    """404 maps to SieveNotFoundError naming the function, not retried."""
    async with serve() as (fake, sieve):
        error = await first_error(sieve, "sieve", "nope")
    assert type(error) is SieveNotFoundError
    assert "sieve/nope" in str(error)
    assert len(fake.requests) == 1


async def test_rejected_limit_is_invalid_request(serve: Any) -> None:
    """422 with FastAPI's detail list maps to SieveInvalidRequestError with a readable message."""
    async with serve(max_limit=1000) as (_, sieve):
        with pytest.raises(SieveInvalidRequestError) as caught:
            await sieve.list_function_jobs("sieve", "retalker", page_size=5000).collect()
    assert caught.value.status == 422
    assert "query.limit" in str(caught.value)
    assert isinstance(caught.value.detail, list)


async def test_rate_limit_exhausted_says_attempts(serve: Any) -> None:
    """429 on every attempt ends in SieveRateLimitError that says how many attempts were made."""
    async with serve({"max_retries": 2}, faults=always("429")) as (fake, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveRateLimitError
    assert error.attempts == 3
    assert "after 3 attempts" in str(error)
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
async def test_server_errors_exhausted(serve: Any, status: str) -> None:
    """5xx on every attempt ends in SieveServerError after max_retries + 1 attempts."""
    async with serve({"max_retries": 1}, faults=always(status)) as (fake, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveServerError and error.status == int(status)
    assert len(fake.requests) == 2


async def test_dropped_connection_is_connection_error(serve: Any) -> None:
    """A connection the server drops every time ends in SieveConnectionError."""
    async with serve({"max_retries": 1}, http=True, faults=always("drop")) as (_, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveConnectionError
    assert error.attempts == 2


async def test_truncated_body_is_connection_error(serve: Any) -> None:
    """A body cut short on every attempt ends in SieveConnectionError saying so."""
    async with serve({"max_retries": 1}, http=True, faults=always("truncate")) as (_, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveConnectionError
    assert "cut short" in str(error)


async def test_refused_connection_is_connection_error() -> None:
    """Nothing listening: SieveConnectionError, not an aiohttp exception."""
    async with FakeSieve() as fake:
        url = fake.url
    async with SieveClient(api_key="k", base_url=url, max_retries=0) as sieve:
        error = await first_error(sieve)
    assert type(error) is SieveConnectionError
    assert isinstance(error.__cause__, Exception)


async def test_slow_server_is_timeout(serve: Any) -> None:
    """A server slower than the timeout: SieveTimeoutError, a SieveConnectionError."""
    async with serve({"timeout": 0.05, "max_retries": 1}, http=True, latency=0.5) as (_, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveTimeoutError
    assert isinstance(error, SieveConnectionError)


async def test_non_json_body_is_decode_error(serve: Any) -> None:
    """A 200 with an HTML body, every attempt: SieveDecodeError with status and first bytes."""
    async with serve({"max_retries": 1}, faults=always("non_json")) as (_, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveDecodeError
    assert error.status == 200
    assert error.body_start.startswith(b"<html>")
    assert "<html>" in str(error)


async def test_wrong_shape_is_decode_error_without_retry(serve: Any) -> None:
    """JSON of neither listing shape is SieveDecodeError at once: retrying cannot fix it."""
    async with serve(faults=always("wrong_shape")) as (fake, sieve):
        error = await first_error(sieve)
    assert type(error) is SieveDecodeError
    assert "'data' array" in str(error)
    assert len(fake.requests) == 1


async def test_stuck_next_offset_is_pagination_error(serve: Any) -> None:
    """An envelope whose next_offset does not advance raises SievePaginationError."""
    async with serve(faults=Faults(schedule={1: "stuck"}), page_cap=10) as (_, sieve):
        with pytest.raises(SievePaginationError, match="does not move forward"):
            await sieve.list_function_jobs("sieve", "retalker").collect()


async def test_oversized_body_is_refused(serve: Any) -> None:
    """A page above max_response_bytes is refused with a SieveDecodeError naming the cap."""
    async with serve({"max_response_bytes": 10_000}, http=True) as (_, sieve):
        with pytest.raises(SieveDecodeError, match="max_response_bytes"):
            await sieve.list_function_jobs("sieve", "retalker", page_size=100).collect()


def test_every_api_error_is_a_sieve_error() -> None:
    """The tree has one base: every class derives from SieveError."""
    for cls in (
        SieveConfigError,
        SieveAPIError,
        SieveAuthenticationError,
        SievePermissionError,
        SieveNotFoundError,
        SieveInvalidRequestError,
        SieveRateLimitError,
        SieveServerError,
        SieveConnectionError,
        SieveTimeoutError,
        SieveDecodeError,
        SievePaginationError,
    ):
        assert issubclass(cls, SieveError)


async def test_key_never_in_messages_reprs_or_logs(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Across failures of every kind, no message, repr or DEBUG log line contains the key."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    kinds = ["429", "500", "drop", "truncate", "non_json", "403", "wrong_shape"]
    for kind in kinds:
        async with serve({"max_retries": 1}, faults=always(kind)) as (_, sieve):
            error = await first_error(sieve)
            seen += [str(error), repr(error), repr(sieve), repr(error.__cause__)]
    async with FakeSieve() as fake, SieveClient(api_key="wrong", base_url=fake.url) as sieve:
        error = await first_error(sieve)
        seen += [str(error), repr(error)]
    assert caplog.records, "DEBUG logging produced records to inspect"
    seen += [record.getMessage() for record in caplog.records]
    for text in seen:
        assert DEFAULT_API_KEY not in text


async def test_use_after_close_is_a_closed_error_naming_the_remedy() -> None:
    """A paginator, a read-ahead paginator and a fan-out of a closed client each refuse with
    SieveClosedError (not SieveConfigError) and send nothing."""
    async with FakeSieve() as fake:
        sieve = SieveClient(api_key=fake.api_key, base_url=fake.url)
        async with sieve:
            assert len(await sieve.list_jobs(max_items=3).collect()) == 3
        sent = len(fake.requests)
        for use in (
            sieve.list_jobs().collect(),
            sieve.list_jobs(read_ahead=2).collect(),
            _drain(sieve.list_jobs_for_functions(["sieve/retalker"])),
        ):
            with pytest.raises(SieveClosedError, match="client is closed; create a new"):
                await use
        assert not isinstance(SieveClosedError("x"), SieveConfigError)
        assert len(fake.requests) == sent


async def _drain(fan_out: Any) -> list[Any]:
    async with fan_out:
        return [item async for item in fan_out]


async def test_a_failed_fan_out_raises_its_error_without_the_stream_in_the_traceback(
    serve: Any,
) -> None:
    """A missing function under on_error="raise": the SieveNotFoundError itself, with no
    anyio.EndOfStream chained to it or printed around it."""
    import traceback

    async with serve() as (_, sieve):
        missing = r"acme/whisper/jobs\?offset=0: Function not found\."
        with pytest.raises(SieveNotFoundError, match=missing) as caught:
            async for _ in sieve.list_jobs_for_functions(["sieve/retalker", "acme/whisper"]):
                pass
    error: BaseException | None = caught.value
    chained = []
    while error is not None:
        chained.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    assert chained == ["SieveNotFoundError"]
    printed = "".join(traceback.format_exception(caught.value))
    assert "EndOfStream" not in printed
    assert "ClosedResourceError" not in printed
