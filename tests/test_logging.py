"""Logging like a well-behaved library: silent unless the application configures logging, one
INFO record per retry saying what happened, handled failures not logged above INFO."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from sieve_async.testing import Faults

pytestmark = pytest.mark.anyio

QUIET_PROGRAM = textwrap.dedent(
    """
    import asyncio, logging
    from sieve_async import SieveClient
    from sieve_async.testing import FakeSieve, Faults

    async def main():
        faults = Faults(schedule={0: "503", 1: "429"})
        async with FakeSieve(functions={"sieve/a": 30}, faults=faults) as fake:
            async with SieveClient(api_key=fake.api_key, base_url=fake.url,
                                   retry_wait_initial=0.001, retry_wait_max=0.01) as sieve:
                jobs = sieve.list_jobs_for_functions(["sieve/a", "sieve/missing"],
                                                     on_error="continue")
                got = [job async for _, job in jobs]
                print(len(got), [str(ref) for ref, _ in jobs.failures], sieve.stats.retries)
        # What the library logs at WARNING reaches no one the application did not set up.
        logging.getLogger("sieve_async").warning("a warning of the library")

    asyncio.run(main())
    """
)


def test_nothing_is_printed_unless_the_application_configures_logging() -> None:
    """A program that never touches logging sees no line on stderr: not for retries, not for a
    failed listing under on_error="continue", not for a warning of the package's logger."""
    done = subprocess.run(
        [sys.executable, "-c", QUIET_PROGRAM],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "30 ['sieve/missing'] 2\n"
    assert done.stderr == ""


async def test_each_retry_is_one_info_record_saying_what_happened(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Method, URL (without the key), status, attempt and wait, at INFO, once per retry."""
    caplog.set_level(logging.DEBUG, logger="sieve_async")
    faults = Faults(schedule={0: "503", 1: "429"})
    async with serve(functions={"sieve/a": 5}, faults=faults, http=True) as (fake, sieve):
        assert len(await sieve.list_function_jobs("sieve", "a").collect()) == 5
    retries = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(retries) == 2
    first, second = (r.getMessage() for r in retries)
    assert first.startswith(f"GET {fake.url}/v2/functions/sieve/a/jobs: HTTP 503")
    assert "attempt 1 of 6, retrying in 0.0" in first
    assert second.startswith(f"GET {fake.url}/v2/functions/sieve/a/jobs: HTTP 429")
    assert "attempt 2 of 6, retrying in 0.0" in second
    assert all(r.name == "sieve_async" for r in retries)
    assert all(fake.api_key not in r.getMessage() for r in caplog.records)


async def test_a_handled_failure_is_not_logged_above_info(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_error="continue" a failed listing is the caller's to read in .failures: one
    INFO record names it, and nothing is logged at WARNING or above."""
    caplog.set_level(logging.DEBUG, logger="sieve_async")
    async with serve(functions={"sieve/a": 5}) as (_, sieve):
        jobs = sieve.list_jobs_for_functions(["sieve/a", "sieve/gone"], on_error="continue")
        assert len([job async for _, job in jobs]) == 5
    assert [str(ref) for ref, _ in jobs.failures] == ["sieve/gone"]
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == []
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].startswith("listing sieve/gone failed: HTTP 404")
