"""The export loop, its writers and its state file, in-process against FakeSieve."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
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
    ListingState,
    OutputLockedError,
    ParquetWriter,
    StateError,
    _since_window,
    export,
    load_state,
    lock_output,
    save_state,
    verify_output,
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
    path.write_bytes(b'{"version": 2, "params"')
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

        checksum = verify_output(out, state)
        with out.open("r+b") as file:
            file.truncate(state.length)
            file.seek(state.length)
            writer = JsonlWriter(
                file, length=state.length, owned=False, durable=True, checksum=checksum
            )
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


FORMULAS = ("=1+2", "+1", "-1", "@SUM(A1)", "\tcmd", "\rcmd")


async def test_csv_neutralises_formula_cells_unless_asked_for_raw() -> None:
    """CSV cells starting with = + - @ tab or CR get a leading quote; raw_formulas keeps them."""
    names = ("error", "status", "visibility", "run_id", "function_id", "organization_id")
    fields = dict(zip(names, FORMULAS, strict=True))
    jobs = [job(**fields, inputs={"x": "=not a cell"}, restarts=[], future_field="=x")]

    def rows(**options: Any) -> dict[str, str]:
        out = io.BytesIO()
        CsvWriter(out, owned=False, durable=False, **options).write(REF, jobs)
        text = out.getvalue().decode()
        return next(csv.DictReader(io.StringIO(text, newline="")))

    safe = rows()
    for name, value in fields.items():
        assert safe[name] == "'" + value
    assert json.loads(safe["inputs"]) == {"x": "=not a cell"}
    assert json.loads(safe["_extra"]) == {"future_field": "=x"}
    assert safe["id"] == "j1"
    assert safe[FUNCTION_KEY] == "sieve/retalker"
    raw = rows(raw_formulas=True)
    for name, value in fields.items():
        assert raw[name] == value


async def test_jsonl_keeps_formula_text_unchanged() -> None:
    """JSONL is lossless: formula-like text is written as the server sent it."""
    out = io.BytesIO()
    JsonlWriter(out, owned=False, durable=False).write(REF, [job(error="=1+2")])
    assert json.loads(out.getvalue())["error"] == "=1+2"


async def test_export_with_status_writes_only_jobs_of_that_status(serve: Any) -> None:
    """export(status=...) writes exactly the listing's jobs in that status, in order."""
    functions = {"sieve/a": 400, "sieve/b": 250}
    async with serve(functions=functions, page_cap=50) as (fake, sieve):
        out = io.BytesIO()
        result = await export(
            sieve,
            [FunctionRef.parse(name) for name in functions],
            JsonlWriter(out, owned=False, durable=False),
            status="error",
        )
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert {line["status"] for line in lines} == {"error"}
        for name, total in functions.items():
            got = [line["id"] for line in lines if line[FUNCTION_KEY] == name]
            expected = [j["id"] for j in fake.jobs(name, status="error")]
            assert got == expected
            assert 0 < len(expected) < total
        assert result.jobs == len(lines)
        assert all(r.query.get("status") == "error" for r in fake.listing_requests())


async def test_state_records_the_checksum_of_the_bytes_it_covers(
    serve: Any, tmp_path: Path
) -> None:
    """Every saved state names the sha256 of exactly the output's first `length` bytes."""
    out = tmp_path / "jobs.csv"
    state_path = tmp_path / "jobs.csv.state.json"
    seen: set[tuple[int, str | None]] = set()

    def check(_: Any) -> None:
        state = load_state(state_path)
        assert state is not None
        assert state.sha256 == hashlib.sha256(out.read_bytes()[: state.length]).hexdigest()
        seen.add((state.length, state.sha256))

    async with serve(functions={"sieve/a": 300}, page_cap=50) as (_, sieve):
        with out.open("wb") as file:
            await export(
                sieve,
                [FunctionRef.parse("sieve/a"), FunctionRef.parse("sieve/missing")],
                CsvWriter(file, owned=False, durable=True),
                state=ExportState(params={}),
                state_path=state_path,
                save_every=0,
                on_progress=check,
            )
    assert len(seen) > 3
    state = load_state(state_path)
    assert state is not None
    assert state.length == out.stat().st_size
    assert verify_output(out, state).hexdigest() == state.sha256


def saved(tmp_path: Path, data: bytes, **fields: Any) -> tuple[Path, ExportState]:
    out = tmp_path / "jobs.jsonl"
    out.write_bytes(data)
    state = ExportState(
        params={}, length=len(data), sha256=hashlib.sha256(data).hexdigest(), **fields
    )
    return out, state


def test_verify_output_accepts_the_covered_bytes_and_ignores_later_ones(tmp_path: Path) -> None:
    """Bytes after the covered length are not checked (a resume drops them)."""
    out, state = saved(tmp_path, b'{"id": 1}\n{"id": 2}\n')
    with out.open("ab") as file:
        file.write(b'{"id": 3}\n{"id"')
    checksum = verify_output(out, state)
    assert checksum.hexdigest() == state.sha256
    checksum.update(b"more")
    assert checksum.hexdigest() == hashlib.sha256(b'{"id": 1}\n{"id": 2}\nmore').hexdigest()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda out: out.write_bytes(out.read_bytes().replace(b"1", b"7")), "changed"),
        (lambda out: out.write_bytes(b'{"id": 0}\n' + out.read_bytes()), "changed"),
        (lambda out: out.write_bytes(out.read_bytes()[:-1]), r"shorter .*\(19 < 20 bytes\)"),
        (lambda out: out.unlink(), "missing"),
    ],
)
def test_verify_output_refuses_a_changed_output(tmp_path: Path, change: Any, message: str) -> None:
    """An output edited, extended at the front, cut short or removed: StateError naming it."""
    out, state = saved(tmp_path, b'{"id": 1}\n{"id": 2}\n')
    change(out)
    with pytest.raises(StateError, match=message) as info:
        verify_output(out, state)
    assert str(out) in str(info.value)


def test_verify_output_needs_a_checksum(tmp_path: Path) -> None:
    """A state without a checksum cannot vouch for the output."""
    out, state = saved(tmp_path, b'{"id": 1}\n')
    state.sha256 = None
    with pytest.raises(StateError, match="checksum"):
        verify_output(out, state)


def test_verify_output_of_an_empty_prefix(tmp_path: Path) -> None:
    """A state covering no bytes matches whatever the file holds."""
    out, state = saved(tmp_path, b"")
    out.write_bytes(b"partial")
    assert verify_output(out, state).hexdigest() == hashlib.sha256().hexdigest()


def test_state_round_trips_every_field(tmp_path: Path) -> None:
    """Listings, flags, checkpoint, length, jobs and checksum all survive a save and a load."""
    path = tmp_path / "s.json"
    checkpoint = {"version": 1, "listing": "/v2/x", "offset": 3, "last_id": "a", "recent": []}
    state = ExportState(
        params={"format": "csv", "status": None},
        listings={
            "sieve/a": ListingState(checkpoint=checkpoint, done=False, unordered=True),
            "sieve/b": ListingState(checkpoint=None, done=True, unordered=False),
        },
        length=123,
        jobs=4,
        sha256="0" * 64,
    )
    save_state(path, state)
    assert load_state(path) == state
    assert not path.with_name("s.json.tmp").exists()


GOOD: dict[str, Any] = {
    "version": 2,
    "params": {"format": "jsonl"},
    "length": 10,
    "sha256": "a" * 64,
    "jobs": 2,
    "listings": {
        "sieve/a": {
            "checkpoint": {
                "version": 1,
                "listing": "/v2/x",
                "offset": 5,
                "last_id": "j",
                "recent": [],
            },
            "done": False,
            "unordered": False,
        }
    },
}


def damaged(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(GOOD))
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


CHECKPOINT = ("listings", "sieve/a", "checkpoint")


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([], "object"),
        (damaged(("version",), 1), "version"),
        (damaged(("version",), KeyError), "version"),
        (damaged(("params",), [["format", "jsonl"]]), "params"),
        (damaged(("length",), "10"), "length"),
        (damaged(("length",), -1), "length"),
        (damaged(("length",), True), "length"),
        (damaged(("length",), KeyError), "length is missing"),
        (damaged(("jobs",), 2.5), "jobs"),
        (damaged(("sha256",), 5), "sha256"),
        (damaged(("sha256",), "xyz"), "sha256"),
        (damaged(("sha256",), KeyError), "sha256"),
        (damaged(("listings",), ["sieve/a"]), "listings"),
        (damaged(("listings", "sieve/a"), []), "sieve/a"),
        (damaged(("listings", "sieve/a", "done"), "no"), "done"),
        (damaged(("listings", "sieve/a", "unordered"), 0), "unordered"),
        (damaged(("listings", "sieve/a", "done"), KeyError), "done"),
        (damaged(("listings", "sieve/a", "checkpoint"), "start"), "checkpoint"),
        (damaged(("listings", "sieve/a", "checkpoint"), KeyError), "checkpoint is missing"),
        (damaged((*CHECKPOINT, "offset"), "ten"), "offset"),
        (damaged((*CHECKPOINT, "offset"), -3), "offset"),
        (damaged((*CHECKPOINT, "recent"), "j"), "recent"),
        (damaged((*CHECKPOINT, "listing"), 7), "listing"),
        (damaged((*CHECKPOINT, "version"), 9), "checkpoint"),
        ({**GOOD, "listings": {"noslash": GOOD["listings"]["sieve/a"]}}, "noslash"),
    ],
)
def test_damaged_state_names_the_file_and_the_problem(
    tmp_path: Path, doc: Any, problem: str
) -> None:
    """Each wrong type or missing key is a StateError naming the file and what is wrong."""
    path = tmp_path / "jobs.jsonl.state.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(StateError, match=problem) as info:
        load_state(path)
    assert str(path) in str(info.value)


def test_the_good_state_of_the_damage_table_loads(tmp_path: Path) -> None:
    """The document the damage table starts from is itself valid."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps(GOOD))
    state = load_state(path)
    assert state is not None
    assert state.listings["sieve/a"].checkpoint == GOOD["listings"]["sieve/a"]["checkpoint"]


def test_an_unreadable_state_names_the_file(tmp_path: Path) -> None:
    """Not JSON at all: StateError naming the file."""
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff not json")
    with pytest.raises(StateError, match="damaged") as info:
        load_state(path)
    assert str(path) in str(info.value)


def test_the_output_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    """A second lock on the same output fails with the holder's PID; release removes the file."""
    out = tmp_path / "jobs.jsonl"
    lock = tmp_path / "jobs.jsonl.lock"
    with lock_output(out):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(OutputLockedError) as info, lock_output(out):
            pass
        assert info.value.pid == os.getpid()
        assert str(os.getpid()) in str(info.value)
        assert str(out) in str(info.value)
        with lock_output(tmp_path / "other.jsonl"):
            pass
    assert not lock.exists()
    with lock_output(out):
        pass


def test_the_output_lock_without_a_readable_pid(tmp_path: Path) -> None:
    """A holder that has not written its PID yet is still reported, as an unknown process."""
    import fcntl

    out = tmp_path / "jobs.jsonl"
    lock = tmp_path / "jobs.jsonl.lock"
    with lock.open("w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(OutputLockedError) as info, lock_output(out):
            pass
    assert info.value.pid is None
    assert "another process" in str(info.value)


async def test_resume_skips_finished_listings_and_continues_the_others(
    serve: Any, tmp_path: Path
) -> None:
    """A state with one listing done and one checkpointed: only the rest of the second is read."""
    async with serve(functions={"sieve/a": 120, "sieve/b": 200}, page_cap=50) as (fake, sieve):
        refs = [FunctionRef.parse("sieve/a"), FunctionRef.parse("sieve/b")]
        first = io.BytesIO()
        async with sieve.list_jobs_for_functions([refs[1]], concurrency=1) as fan:
            async for ref, page in fan.pages():
                JsonlWriter(first, owned=False, durable=False).write(ref, page)
                checkpoint = fan.checkpoint_of(ref)
                break
        assert isinstance(checkpoint, dict)
        state = ExportState(
            params={},
            listings={
                "sieve/a": ListingState(done=True),
                "sieve/b": ListingState(checkpoint=checkpoint),
            },
            jobs=50,
        )
        out = io.BytesIO()
        result = await export(
            sieve, refs, JsonlWriter(out, owned=False, durable=False), state=state
        )
        ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
        assert ids == [j["id"] for j in fake.jobs("sieve/b")[50:]]
        assert result.total_jobs == 200
        assert result.completed == [refs[1]]
        assert not any("/sieve/a/" in r.path for r in fake.listing_requests())


def test_counts_of_zero_and_a_one_byte_prefix(tmp_path: Path) -> None:
    """Zero is a count; a prefix of one byte is read and checked like any other."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**GOOD, "length": 0, "jobs": 0}))
    state = load_state(path)
    assert state is not None
    assert (state.length, state.jobs) == (0, 0)
    out, state = saved(tmp_path, b"x")
    assert verify_output(out, state).hexdigest() == state.sha256


def test_a_resumed_writer_knows_its_checksum_only_when_given_the_prefix() -> None:
    """Resumed without the prefix's hash, a writer cannot vouch for the output; with it, it can."""
    assert JsonlWriter(io.BytesIO(), length=5, owned=False, durable=False).checksum() is None
    prefix = hashlib.sha256(b"12345")
    writer = JsonlWriter(io.BytesIO(), length=5, owned=False, durable=False, checksum=prefix)
    writer.write(REF, [job()])
    line = json.dumps({"id": "j1", FUNCTION_KEY: "sieve/retalker"}, separators=(",", ":"))
    assert writer.checksum() == hashlib.sha256(b"12345" + line.encode() + b"\n").hexdigest()


def test_a_durable_writer_to_a_device_does_not_fsync() -> None:
    """fsync of /dev/null fails with EINVAL; a writer asked to be durable there just flushes."""
    jobs = [job(), job(id="j2")]
    copy = io.BytesIO()
    JsonlWriter(copy, owned=False, durable=False).write(REF, jobs)
    with open(os.devnull, "wb") as file:
        writer = JsonlWriter(file, owned=False, durable=True)
        writer.write(REF, jobs)
        assert writer.sync() == len(copy.getvalue())


async def test_stop_at_ends_a_listing_before_a_known_job_and_records_the_head(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``stop_at``: a listing stops before the first job named (the page holding it is cut);
    one that meets none is read whole, with a warning. The state records each listing's head."""
    async with serve(functions={"sieve/a": 120, "sieve/b": 30}, page_cap=50) as (fake, sieve):
        refs = [FunctionRef.parse("sieve/a"), FunctionRef.parse("sieve/b")]
        a_ids = [j["id"] for j in fake.jobs("sieve/a")]
        stop_at = {"sieve/a": [a_ids[77], a_ids[90]], "sieve/b": ["gone-1"]}
        out = io.BytesIO()
        state = ExportState(params={})
        await export(
            sieve, refs, JsonlWriter(out, owned=False, durable=False), state=state, stop_at=stop_at
        )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [j["id"] for j in lines if j[FUNCTION_KEY] == "sieve/a"] == a_ids[:77]
    assert len([j for j in lines if j[FUNCTION_KEY] == "sieve/b"]) == 30
    assert state.listings["sieve/a"].head == a_ids[:8]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "sieve/b: the jobs the earlier export started from have all left the listing, so all "
        "of it was exported"
    ]


async def test_since_writes_a_page_around_a_job_whose_time_cannot_be_read(
    serve_payloads: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid RFC 3339 created_at that Python cannot hold (year 0) costs neither the export nor
    the other jobs of its page: that job is written uncompared, with a warning naming it."""
    page = [
        {"id": "new", "created_at": "2024-12-03T00:00:00Z"},
        {"id": "year-0", "created_at": "0000-01-01T00:00:00Z"},
        {"id": "also-new", "created_at": "2024-12-02t00:00:00z"},
        {"id": "old", "created_at": "2024-11-01T00:00:00"},
    ]
    async with serve_payloads() as (payloads, sieve):
        payloads.items["/v2/functions/sieve/a/jobs"] = page
        out = io.BytesIO()
        with caplog.at_level("WARNING", logger="sieve_async.export"):
            result = await export(
                sieve,
                [FunctionRef.parse("sieve/a")],
                JsonlWriter(out, owned=False, durable=False),
                since=datetime(2024, 12, 1, tzinfo=UTC),
            )
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [
        "new",
        "year-0",
        "also-new",
    ]
    assert result.completed == [FunctionRef.parse("sieve/a")]
    assert not result.failures
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "'created_at' of Job 'year-0'" in record.getMessage()
    assert "without comparing it with since" in record.getMessage()


def test_parquet_leaves_an_unreadable_timestamp_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Parquet's timestamp columns cannot hold an instant outside years 1 to 9999: that cell is
    empty, with a warning, and the job and the rest of its row are written."""
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "jobs.parquet"
    writer = ParquetWriter(path)
    late = "9999-12-31T23:59:59-01:00"
    with caplog.at_level("WARNING", logger="sieve_async.export"):
        writer.write(REF, [job(id="a", created_at=late, status="finished"), job(id="b")])
    writer.close()
    table = pq.read_table(path).to_pylist()
    assert [(row["id"], row["created_at"], row["status"]) for row in table] == [
        ("a", None, "finished"),
        ("b", None, None),
    ]
    assert any("'created_at' of Job 'a'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
async def test_export_keeps_integers_beyond_64_bits_and_lone_surrogates(
    serve_payloads: Any, kind: str
) -> None:
    """What only the standard library reads (an integer beyond 64 bits, a lone surrogate) is
    written exactly too: JSONL lines and CSV JSON cells hold every digit."""
    wide = {"id": "w", "inputs": {"n": 2**70}, "outputs": [{"data": -(2**64)}], "extra": 10**30}
    odd = {"id": "s", "error": "ok", "inputs": {"t": "\ud800"}}
    async with serve_payloads() as (payloads, sieve):
        payloads.items["/v2/functions/sieve/a/jobs"] = [wide, odd]
        out = io.BytesIO()
        make = JsonlWriter if kind == "jsonl" else CsvWriter
        result = await export(
            sieve, [FunctionRef.parse("sieve/a")], make(out, owned=False, durable=False)
        )
    assert result.jobs == 2
    text = out.getvalue().decode()
    if kind == "jsonl":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines == [{**wide, FUNCTION_KEY: "sieve/a"}, {**odd, FUNCTION_KEY: "sieve/a"}]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert json.loads(rows[0]["inputs"]) == {"n": 2**70}
        assert json.loads(rows[0]["outputs"]) == [{"data": -(2**64)}]
        assert json.loads(rows[0]["_extra"]) == {"extra": 10**30}
        assert json.loads(rows[1]["inputs"]) == {"t": "\ud800"}


def test_every_format_writes_timestamps_in_utc_alike(tmp_path: Path) -> None:
    """JSONL and CSV write each timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, whatever
    form RFC 3339 allowed the server, and Parquet holds the same instants; a value that is
    not a date-time stays as it came in the text formats."""
    pq = pytest.importorskip("pyarrow.parquet")
    sent = {
        "created_at": "2025-05-30T12:00:00.5+05:30",
        "started_at": "2025-05-30t06:30:01z",
        "completed_at": "2025-05-30T06:30:02.123456",
    }
    rendered = {
        "created_at": "2025-05-30T06:30:00.500000Z",
        "started_at": "2025-05-30T06:30:01.000000Z",
        "completed_at": "2025-05-30T06:30:02.123456Z",
    }
    jobs = [job(id="a", **sent), job(id="b", created_at="yesterday")]
    lines = io.BytesIO()
    JsonlWriter(lines, owned=False, durable=False).write(REF, jobs)
    first, second = (json.loads(line) for line in lines.getvalue().splitlines())
    assert {key: first[key] for key in rendered} == rendered
    assert second["created_at"] == "yesterday"
    text = io.BytesIO()
    CsvWriter(text, owned=False, durable=False).write(REF, jobs)
    rows = list(csv.DictReader(io.StringIO(text.getvalue().decode())))
    assert {key: rows[0][key] for key in rendered} == rendered
    assert rows[1]["created_at"] == "yesterday"
    path = tmp_path / "jobs.parquet"
    writer = ParquetWriter(path)
    writer.write(REF, jobs)
    writer.close()
    table = pq.read_table(path).to_pylist()
    assert {
        key: table[0][key].isoformat(timespec="microseconds").replace("+00:00", "Z")
        for key in rendered
    } == rendered
    assert table[1]["created_at"] is None
