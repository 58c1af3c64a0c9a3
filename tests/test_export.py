"""The export loop, its writers and its state file, in-process against FakeSieve."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sieve_async import FunctionRef, Job
from sieve_async._convert import structure
from sieve_async._export import (
    CSV_COLUMNS,
    FUNCTION_KEY,
    CsvWriter,
    ExportState,
    JsonlWriter,
    StateError,
    _since_window,
    export,
    load_state,
    save_state,
)

pytestmark = pytest.mark.anyio

REF = FunctionRef.parse("sieve/retalker")


def job(**fields: Any) -> Job:
    return structure({"id": "j1", **fields}, Job)


async def test_jsonl_keeps_fields_the_model_does_not_know() -> None:
    """A field unknown to Job is written unchanged, beside the function key."""
    out = io.BytesIO()
    writer = JsonlWriter(out, owned=False, durable=False)
    raw = {"id": "j1", "status": "finished", "future_field": {"nested": [1, 2]}}
    writer.write(REF, [job(**raw)])
    assert json.loads(out.getvalue()) == {**raw, FUNCTION_KEY: "sieve/retalker"}
    assert writer.sync() == len(out.getvalue())


async def test_csv_flattens_nested_values_and_keeps_unknown_ones() -> None:
    """CSV has one row per job, nested values as JSON text, unknown fields in _extra."""
    out = io.BytesIO()
    writer = CsvWriter(out, owned=False, durable=False)
    writer.write(REF, [job(outputs=[{"type": "str", "data": "x"}], future_field=3)])
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0][FUNCTION_KEY] == "sieve/retalker"
    assert json.loads(rows[0]["outputs"]) == [{"type": "str", "data": "x"}]
    assert json.loads(rows[0]["_extra"]) == {"future_field": 3}


async def test_state_round_trips_and_refuses_damage(tmp_path: Path) -> None:
    """A saved state loads back equal; a damaged one raises StateError; none is None."""
    path = tmp_path / "jobs.jsonl.state.json"
    assert load_state(path) is None
    state = ExportState(params={"format": "jsonl"}, length=10, jobs=2)
    save_state(path, state)
    assert load_state(path) == state
    path.write_bytes(b'{"version": 1, "params"')
    with pytest.raises(StateError, match="damaged"):
        load_state(path)


def test_since_stops_a_newest_first_page_and_filters_an_unordered_one() -> None:
    """Newest-first: stop at the first older job. Out of order: keep filtering, never stop."""
    base = datetime(2025, 6, 1, tzinfo=UTC)
    since = base - timedelta(hours=2)

    def at(*hours: int) -> list[Job]:
        return [
            job(id=f"j{i}", created_at=(base - timedelta(hours=h)).isoformat())
            for i, h in enumerate(hours)
        ]

    keep, stop, unordered, _ = _since_window(at(0, 1, 3, 4), since, None, False)
    assert [j.id for j in keep] == ["j0", "j1"]
    assert stop
    assert not unordered
    keep, stop, unordered, _ = _since_window(at(0, 3, 1, 4), since, None, False)
    assert [j.id for j in keep] == ["j0", "j2"]
    assert not stop
    assert unordered


class Crash(Exception):
    pass


class CrashingWriter(JsonlWriter):
    """Fails after a number of pages, as a full disk or a kill would."""

    def __init__(self, *args: Any, pages: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages = pages

    def write(self, ref: FunctionRef, jobs: Any) -> None:
        if self.pages == 0:
            raise Crash
        self.pages -= 1
        super().write(ref, jobs)


async def test_export_resumes_from_its_state_with_every_job_once(
    serve: Any, tmp_path: Path
) -> None:
    """A crashed export leaves a state; resuming from it writes each remaining job once."""
    out = tmp_path / "jobs.jsonl"
    state_path = tmp_path / "jobs.jsonl.state.json"
    functions = {"sieve/a": 700, "sieve/b": 450, "acme/c": 0}
    async with serve(functions=functions, page_cap=50) as (fake, sieve):
        refs = [FunctionRef.parse(name) for name in functions]
        with out.open("wb") as file:
            writer = CrashingWriter(file, owned=False, durable=True, pages=9)
            with pytest.raises(Crash):
                await export(
                    sieve, refs, writer, concurrency=2, state_path=state_path, save_every=0
                )
        state = load_state(state_path)
        assert state is not None
        assert 0 < state.jobs < 1150

        with out.open("r+b") as file:
            file.truncate(state.length)
            file.seek(state.length)
            writer = JsonlWriter(file, length=state.length, owned=False, durable=True)
            result = await export(
                sieve, refs, writer, concurrency=2, state=state, state_path=state_path
            )
        assert result.total_jobs == 1150
        assert not result.failures
        lines = [json.loads(line) for line in out.read_bytes().splitlines()]
        for name in functions:
            got = [line["id"] for line in lines if line[FUNCTION_KEY] == name]
            assert got == [j["id"] for j in fake.jobs(name)]
        assert not state_path.exists()


async def test_export_reports_progress_and_failures(serve: Any) -> None:
    """A missing function is a failure beside the exported ones; progress sees every page."""
    async with serve(functions={"sieve/a": 120}, page_cap=50) as (_, sieve):
        seen: list[int] = []
        writer = JsonlWriter(io.BytesIO(), owned=False, durable=False)
        result = await export(
            sieve,
            [FunctionRef.parse("sieve/a"), FunctionRef.parse("sieve/missing")],
            writer,
            on_progress=lambda r: seen.append(r.total_jobs),
        )
        assert result.jobs == 120
        assert result.completed == [FunctionRef.parse("sieve/a")]
        assert [str(ref) for ref, _ in result.failures] == ["sieve/missing"]
        assert seen[-1] == 120
        assert result.done == 1


async def test_since_stops_reading_a_listing(serve: Any) -> None:
    """--since ends a newest-first listing at its first older job: later pages are not fetched."""
    async with serve(functions={"sieve/a": 1000}, page_cap=50) as (fake, sieve):
        jobs = fake.jobs("sieve/a")
        since = datetime.fromisoformat(jobs[120]["created_at"]).replace(tzinfo=UTC)
        out = io.BytesIO()
        result = await export(
            sieve,
            [FunctionRef.parse("sieve/a")],
            JsonlWriter(out, owned=False, durable=False),
            since=since,
        )
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [line["id"] for line in lines] == [j["id"] for j in jobs[:121]]
        assert result.completed == [FunctionRef.parse("sieve/a")]
        assert len(fake.requests) <= 4, "pages past the first older job were not asked for"
