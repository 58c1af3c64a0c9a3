"""``sieve_async.export(...)``: the command line's export as a library function, with its
resume guarantees: one writer per output, a checked state, every job exactly once."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import sieve_async
from sieve_async import ExportResult, SieveError
from sieve_async._export import FUNCTION_KEY, lock_output

pytestmark = pytest.mark.anyio

FUNCTIONS = {"sieve/a": 230, "sieve/b": 140, "acme/c": 0}


class Crash(Exception):
    pass


def crash_after(pages: int) -> Any:
    """An ``on_progress`` that raises once ``pages`` pages were written, as Ctrl-C would."""

    def on_progress(result: ExportResult) -> None:
        if result.pages >= pages:
            raise Crash

    return on_progress


def exported(path: Path) -> dict[str, list[str]]:
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    got: dict[str, list[str]] = {}
    for line in lines:
        got.setdefault(line[FUNCTION_KEY], []).append(line["id"])
    return got


async def test_an_export_writes_every_job_once_and_returns_counts(
    serve: Any, tmp_path: Path
) -> None:
    """JSONL by default: each job as served plus its function; the state is gone at the end."""
    out = tmp_path / "jobs.jsonl"
    async with serve(functions=FUNCTIONS, page_cap=50) as (fake, sieve):
        result = await sieve_async.export(sieve, list(FUNCTIONS), out, concurrency=2)
        wanted = {name: [job["id"] for job in fake.jobs(name)] for name in FUNCTIONS}
    assert (result.jobs, result.total_jobs, result.listings) == (370, 370, 3)
    assert sorted(str(ref) for ref in result.completed) == sorted(FUNCTIONS)
    assert result.failures == []
    assert exported(out) == {name: ids for name, ids in wanted.items() if ids}
    assert not (tmp_path / "jobs.jsonl.state.json").exists()


async def test_an_interrupted_export_resumes_with_every_job_once(
    serve: Any, tmp_path: Path
) -> None:
    """Stopped part way, with bytes written after its last state (as after kill -9): the same
    call refuses to start over, resume=True drops those bytes and finishes, exactly once."""
    out = tmp_path / "jobs.jsonl"
    state = tmp_path / "jobs.jsonl.state.json"
    async with serve(functions=FUNCTIONS, page_cap=50) as (fake, sieve):
        with pytest.raises(Crash):
            await sieve_async.export(
                sieve, FUNCTIONS, out, concurrency=2, on_progress=crash_after(3)
            )
        covered = json.loads(state.read_bytes())["length"]
        assert covered == out.stat().st_size > 0
        written = out.read_bytes().count(b"\n")
        with out.open("ab") as file:
            file.write(b'{"id": "half a line wr')

        refused = r"holds an export that did not finish .* pass resume=True to continue it"
        with pytest.raises(SieveError, match=refused):
            await sieve_async.export(sieve, FUNCTIONS, out, concurrency=2)
        assert out.stat().st_size == covered + 22

        result = await sieve_async.export(sieve, FUNCTIONS, out, concurrency=2, resume=True)
        wanted = {name: [job["id"] for job in fake.jobs(name)] for name in FUNCTIONS}
    assert result.total_jobs == 370
    assert result.jobs == 370 - written
    assert exported(out) == {name: ids for name, ids in wanted.items() if ids}
    assert not state.exists()


async def test_a_resume_checks_the_arguments_and_the_output(serve: Any, tmp_path: Path) -> None:
    """Other arguments, or an output changed since its state: SieveError naming the cause,
    the file left as it was; overwrite=True starts over."""
    out = tmp_path / "jobs.jsonl"
    async with serve(functions=FUNCTIONS, page_cap=50) as (fake, sieve):
        with pytest.raises(Crash):
            await sieve_async.export(sieve, FUNCTIONS, out, on_progress=crash_after(2))
        before = out.read_bytes()
        with pytest.raises(SieveError, match=r"written for other arguments \(different status\)"):
            await sieve_async.export(sieve, FUNCTIONS, out, status="finished", resume=True)
        out.write_bytes(b"X" + before[1:])
        with pytest.raises(SieveError, match=r"was changed after the export wrote it"):
            await sieve_async.export(sieve, FUNCTIONS, out, resume=True)
        assert out.read_bytes() == b"X" + before[1:]
        result = await sieve_async.export(sieve, FUNCTIONS, out, overwrite=True)
        wanted = {name: [job["id"] for job in fake.jobs(name)] for name in FUNCTIONS}
    assert result.total_jobs == result.jobs == 370
    assert exported(out) == {name: ids for name, ids in wanted.items() if ids}


async def test_an_export_into_a_locked_output_names_the_holder(
    serve: Any, tmp_path: Path
) -> None:
    """Another export writing the file: SieveError naming its process, nothing written."""
    out = tmp_path / "jobs.jsonl"
    async with serve(functions=FUNCTIONS) as (fake, sieve):
        holder = rf"being written by process {os.getpid()}"
        with lock_output(out), pytest.raises(SieveError, match=holder):
            await sieve_async.export(sieve, FUNCTIONS, out)
    assert fake.requests == []
    assert not out.exists()


async def test_failures_are_reported_and_kept_for_a_resume(serve: Any, tmp_path: Path) -> None:
    """A missing function fails beside the others, which are exported; the state stays."""
    out = tmp_path / "jobs.csv"
    async with serve(functions=FUNCTIONS) as (fake, sieve):
        result = await sieve_async.export(sieve, ["sieve/a", "sieve/gone"], out)
        ids = [job["id"] for job in fake.jobs("sieve/a")]
    assert [(str(ref), type(error).__name__) for ref, error in result.failures] == [
        ("sieve/gone", "SieveNotFoundError")
    ]
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["id"] for row in rows] == ids
    assert (tmp_path / "jobs.csv.state.json").exists()


async def test_a_parquet_export_resumes_with_every_job_once(
    serve: Any, tmp_path: Path
) -> None:
    """Parquet keeps its rows as parts committed with the state; resume=True finishes the file
    with each job once, and the parts are gone."""
    out = tmp_path / "jobs.parquet"
    async with serve(functions=FUNCTIONS, page_cap=50) as (fake, sieve):
        with pytest.raises(Crash):
            await sieve_async.export(sieve, FUNCTIONS, out, on_progress=crash_after(3))
        assert (tmp_path / "jobs.parquet.parts").is_dir()
        result = await sieve_async.export(sieve, FUNCTIONS, out, resume=True)
        wanted = sorted(job["id"] for name in FUNCTIONS for job in fake.jobs(name))
    assert result.total_jobs == 370
    assert sorted(pq.read_table(out).column("id").to_pylist()) == wanted
    assert sorted(os.listdir(tmp_path)) == ["jobs.parquet"]


async def test_parquet_and_since(serve: Any, tmp_path: Path) -> None:
    """The format follows the suffix; since= keeps the jobs created at or after it."""
    out = tmp_path / "jobs.parquet"
    async with serve(functions=FUNCTIONS) as (fake, sieve):
        since = fake.jobs("sieve/a")[99]["created_at"]
        result = await sieve_async.export(sieve, ["sieve/a"], out, since=since)
        ids = [job["id"] for job in fake.jobs("sieve/a")[:100]]
    assert result.jobs == 100
    assert pq.read_table(out).column("id").to_pylist() == ids


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"functions": []}, "at least one"),
        ({"functions": "sieve/a"}, "a list of 'owner/function' names"),
        ({"format": "xlsx"}, r"format must be one of jsonl, csv, parquet; got 'xlsx'"),
        ({"output": "jobs.xlsx"}, r"cannot tell the format of .*jobs\.xlsx.* pass format="),
        ({"resume": True, "overwrite": True}, "not both"),
        ({"csv_raw_formulas": True}, "CSV output only, not jsonl"),
        ({"since": "last week"}, "since must be an ISO 8601"),
        ({"max_jobs": 0}, "max_jobs must be a positive integer"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_happens(
    serve: Any, tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    """ValueError; no request, no file."""
    options = {"functions": ["sieve/a"], "output": "jobs.jsonl", **arguments}
    options["output"] = tmp_path / options["output"]
    async with serve(functions=FUNCTIONS) as (fake, sieve):
        with pytest.raises(ValueError, match=message):
            await sieve_async.export(sieve, **options)
    assert fake.requests == []
    assert os.listdir(tmp_path) == []


async def test_a_single_listing_failing_part_way_keeps_what_it_wrote(tmp_path: Path) -> None:
    """One listing is read with read-ahead; a failure after its first page is a failure of
    that listing, as in a fan-out: the page is in the file and the state resumes after it."""
    from aiohttp import web
    from servers import app_server

    first = [{"id": "j1", "status": "finished"}, {"id": "j2", "status": "finished"}]

    async def jobs(request: web.Request) -> web.Response:
        if request.query.get("offset") == "0":
            return web.json_response({"data": first, "next_offset": 2})
        return web.json_response({"detail": "Function not found."}, status=404)

    out = tmp_path / "jobs.jsonl"
    async with (
        app_server({"/v2/functions/sieve/a/jobs": jobs}) as url,
        sieve_async.SieveClient(api_key="k", base_url=url) as sieve,
    ):
        result = await sieve_async.export(sieve, ["sieve/a"], out, page_size=2)
    assert [(str(ref), type(error).__name__) for ref, error in result.failures] == [
        ("sieve/a", "SieveNotFoundError")
    ]
    assert (result.jobs, result.completed) == (2, [])
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["j1", "j2"]
    state = json.loads((tmp_path / "jobs.jsonl.state.json").read_bytes())
    assert state["listings"]["sieve/a"]["checkpoint"]["last_id"] == "j2"
    assert state["listings"]["sieve/a"]["done"] is False
