"""``SieveClient.get_job``: ``GET /v2/jobs/{job_id}``, following the output offset until every
output is in, against a small aiohttp.web app that sends outputs a part at a time (FakeSieve
sends them all at once; tests/test_fake_sieve.py reads jobs from it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from servers import app_server

from sieve_async import (
    SieveClient,
    SieveDecodeError,
    SieveNotFoundError,
    SievePaginationError,
)

pytestmark = pytest.mark.anyio

JOB_ID = "43d7add5-61cf-44ad-aac8-c5d14c642bb4"


def job_with(outputs: list[Any]) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "function_id": "f1",
        "organization_id": "o1",
        "function": {"name": "retalker", "owner_name": "sieve"},
        "status": "finished",
        "created_at": "2025-06-01T10:00:00.000000",
        "started_at": None,
        "completed_at": None,
        "error": "",
        "visibility": "private",
        "run_id": None,
        "outputs": outputs,
    }


OUTPUTS = [{"type": "str", "name": f"out{i}", "data": f"value {i}"} for i in range(7)]


@asynccontextmanager
async def job_server(
    part: int | None, *, ignore_offset: bool = False, answer_id: str = JOB_ID
) -> AsyncIterator[Any]:
    """Serves `JOB_ID` with `OUTPUTS`, ``part`` of them per answer from ``offset``; yields
    (origin, offsets asked)."""
    asked: list[str | None] = []

    async def get_job(request: web.Request) -> web.Response:
        if request.match_info["job_id"] != JOB_ID:
            return web.json_response({"detail": "Job not found."}, status=404)
        asked.append(request.query.get("offset"))
        offset = 0 if ignore_offset else int(request.query.get("offset", "0"))
        end = None if part is None else offset + part
        body = orjson.dumps({**job_with(OUTPUTS[offset:end]), "id": answer_id})
        return web.Response(body=body, content_type="application/json")

    async with app_server({"/v2/jobs/{job_id}": get_job}) as url:
        yield url, asked


async def test_get_job_follows_the_output_offset_until_every_output_is_in() -> None:
    """Outputs served three at a time: offsets 3, 6, 7 are asked, and all seven arrive in order."""
    async with job_server(3) as (url, asked), SieveClient(api_key="k", base_url=url) as sieve:
        job = await sieve.get_job(JOB_ID)
    assert asked == [None, "3", "6", "7"]
    assert job.id == JOB_ID
    assert job.status == "finished"
    assert [output.name for output in job.outputs] == [f"out{i}" for i in range(7)]
    assert [output["data"] for output in job.raw["outputs"]] == [f"value {i}" for i in range(7)]


async def test_get_job_with_all_outputs_at_once_asks_once_more() -> None:
    """An answer holding every output is confirmed by one request at their count."""
    async with job_server(None) as (url, asked), SieveClient(api_key="k", base_url=url) as sieve:
        job = await sieve.get_job(JOB_ID)
    assert asked == [None, "7"]
    assert len(job.outputs) == 7


async def test_get_job_refuses_a_server_that_ignores_offset() -> None:
    """The first outputs served again at a later offset: SievePaginationError, not a loop."""
    async with (
        job_server(3, ignore_offset=True) as (url, asked),
        SieveClient(api_key="k", base_url=url) as sieve,
    ):
        with pytest.raises(SievePaginationError, match=r"offset=3 sent the job's first outputs"):
            await sieve.get_job(JOB_ID)
    assert asked == [None, "3"]


async def test_get_job_of_an_unknown_job_is_not_found() -> None:
    """404: SieveNotFoundError carrying the server's detail."""
    async with job_server(3) as (url, _), SieveClient(api_key="k", base_url=url) as sieve:
        with pytest.raises(SieveNotFoundError, match="Job not found") as caught:
            await sieve.get_job("no-such-job")
    assert caught.value.status == 404


async def test_get_job_of_another_id_is_a_decode_error() -> None:
    """An answer about another job than the one asked for is refused."""
    async with (
        job_server(3, answer_id="someone-else") as (url, _),
        SieveClient(api_key="k", base_url=url) as sieve,
    ):
        with pytest.raises(SieveDecodeError, match=r"answered with job 'someone-else'"):
            await sieve.get_job(JOB_ID)


@pytest.mark.parametrize("bad", ["", " ", "..", "a/b"])
async def test_a_bad_job_id_is_refused_before_any_request(bad: str) -> None:
    """ValueError naming the job id, before a request is sent."""
    async with job_server(3) as (url, asked), SieveClient(api_key="k", base_url=url) as sieve:
        with pytest.raises(ValueError, match="job id name must"):
            await sieve.get_job(bad)
    assert asked == []
