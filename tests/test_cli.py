"""The ``sieve-async`` command, against a fake Sieve API on loopback.

No mocks: every test talks real HTTP. Most run the command in this process (`cli.run`, which
leaves the collector, the signal handlers and logging as it found them) against a `FakeSieve`
served from a thread. A real ``sieve-async`` process is started only where the test is about the
process: what ``fake-server`` prints and how SIGTERM ends it, an export killed (``kill -9``) or
interrupted (SIGINT) halfway and then resumed, and a second export refused while another process
holds the output's lock. Those also show that the installed entry point runs.
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import os
import runpy
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from servers import ThreadedFake

from sieve_async import cli
from sieve_async.testing import DEFAULT_API_KEY, FakeSieve, Faults, Mutations

CLI = str(Path(sys.executable).parent / "sieve-async")
FUNCTION_KEY = "_sieve_function"
SEED = 7
JOBS = 500
TIMEOUT = 60


class Server:
    """A ``sieve-async fake-server`` process and what it printed on start."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [CLI, "fake-server", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.lines = self._read_lines(4, timeout=10.0)
        assert self.lines[0].startswith("listening on http://127.0.0.1:"), self.lines
        self.url = self.lines[0].split()[-1]
        self.functions = self.lines[2].removeprefix("functions: ").split(" (")[0].split(", ")

    def _read_lines(self, count: int, timeout: float) -> list[str]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while data.count(b"\n") < count:
                left = deadline - time.monotonic()
                chunk = os.read(fd, 4096) if left > 0 and selector.select(left) else b""
                if not chunk:
                    self.stop()
                    pytest.fail(f"fake-server did not start in {timeout} s: {data!r}")
                data += chunk
        return data.decode().splitlines()[:count]

    def env(self) -> dict[str, str]:
        return {**os.environ, "SIEVE_API_URL": self.url, "SIEVE_API_KEY": DEFAULT_API_KEY}

    def stop(self) -> int:
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return code


class ServedFake(ThreadedFake):
    """A `FakeSieve` served from a thread of its own, for a command run in this thread or in a
    process: the functions and jobs of ``fake-server --functions N --jobs M`` with ``options``."""

    def __init__(self, functions: int, jobs: int, **options: Any) -> None:
        super().__init__(FakeSieve(functions=cli._fake_functions(functions, jobs), **options))
        self.functions = self.fake.functions

    def variables(self) -> dict[str, str]:
        return {"SIEVE_API_URL": self.url, "SIEVE_API_KEY": DEFAULT_API_KEY}

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.variables()}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A fake-server process: three functions of 500 jobs, pages capped at 100, no latency."""
    srv = Server("--functions", "3", "--jobs", str(JOBS), "--page-cap", "100", "--seed", str(SEED))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[ServedFake]:
    """What `server` serves, from a thread of this process: the tests only read it."""
    served = ServedFake(3, JOBS, page_cap=100, seed=SEED)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def slow_served() -> Iterator[ServedFake]:
    served = ServedFake(3, 2000, page_cap=50)
    yield served
    served.stop()


@pytest.fixture
def slow_fake(slow_served: ServedFake) -> ServedFake:
    """Slow enough (30 ms per page of 50) to interrupt an export halfway. A test may set its
    latency to 0 once it no longer needs it slow: each starts with it slow again."""
    slow_served.fake.latency = 0.03
    return slow_served


def expected_jobs(functions: list[str], jobs: int = JOBS, seed: int = SEED) -> dict[str, list[Any]]:
    """What the fake server serves, rebuilt from the same arguments (deterministic)."""
    fake = FakeSieve(functions=dict.fromkeys(functions, jobs), seed=seed)
    return {name: fake.jobs(name) for name in functions}


@dataclass
class Result:
    """What a command run in this process returned and printed."""

    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Result]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*args, env=..., cwd=...)``: the command run in this process, with its exit code
    and what it printed; ``env`` holds the variables to set (the SIEVE_ ones are unset
    otherwise), ``cwd`` the directory to run it in."""

    def run_(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            if cwd is not None:
                patch.chdir(cwd)
            try:
                code = cli.run(list(args))
            except SystemExit as exc:  # argparse: bad arguments, --help
                code = exc.code if isinstance(exc.code, int) else -1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run_


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as file:
        return [json.loads(line) for line in file]


def test_fake_server_prints_url_key_and_exports(server: Server) -> None:
    """fake-server's first line is its URL; it also prints the key and the export line."""
    assert server.lines[1] == f"api key: {DEFAULT_API_KEY}"
    assert server.lines[3] == f"export SIEVE_API_URL={server.url} SIEVE_API_KEY={DEFAULT_API_KEY}"
    assert len(server.functions) == 3


def test_fake_server_stops_cleanly_on_sigterm() -> None:
    """SIGTERM ends fake-server with exit code 0."""
    srv = Server("--functions", "1", "--jobs", "1")
    assert srv.stop() == 0


def _utc_text(value: str | None) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def test_jsonl_holds_each_server_job_with_utc_timestamps(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """Each JSONL line is the server's job object plus the function key, in server order, its
    timestamps written as UTC text of one form."""
    out = tmp_path / "jobs.jsonl"
    names = fake.functions[:2]
    result = run("export", *names, "-o", str(out), env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert f"exported {2 * JOBS:,} jobs" in result.stderr
    expected = expected_jobs(fake.functions)
    for jobs in expected.values():
        for job in jobs:
            for key in ("created_at", "started_at", "completed_at"):
                job[key] = _utc_text(job[key])
    got: dict[str, list[Any]] = {name: [] for name in names}
    for line in read_jsonl(out):
        got[line.pop(FUNCTION_KEY)].append(line)
    for name in names:
        assert got[name] == expected[name]
    assert not (tmp_path / "jobs.jsonl.state.json").exists()


def test_stdout_is_the_default_output(fake: ServedFake, run: Run) -> None:
    """Without -o the jobs go to stdout as JSONL and the summary to stderr."""
    result = run("export", fake.functions[0], "--page-size", "40", env=fake.variables())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == JOBS
    assert {json.loads(line)[FUNCTION_KEY] for line in lines} == {fake.functions[0]}
    assert "to stdout" in result.stderr


def test_csv_and_parquet_read_back(fake: ServedFake, run: Run, tmp_path: Path) -> None:
    """CSV (chosen by suffix) and Parquet read back with one row per job."""
    import pyarrow.parquet as pq

    expected_ids = {job["id"] for jobs in expected_jobs(fake.functions).values() for job in jobs}
    csv_path = tmp_path / "jobs.csv"
    result = run("export", "--all-functions", "-o", str(csv_path), env=fake.variables())
    assert result.returncode == 0, result.stderr
    with csv_path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 * JOBS
    assert {row["id"] for row in rows} == expected_ids
    assert json.loads(rows[0]["inputs"])["video"]["type"] == "sieve.Video"

    parquet_path = tmp_path / "jobs.parquet"
    result = run("export", "--all-functions", "-o", str(parquet_path), env=fake.variables())
    assert result.returncode == 0, result.stderr
    table = pq.read_table(parquet_path)
    assert table.num_rows == 3 * JOBS
    assert set(table.column("id").to_pylist()) == expected_ids
    assert table.schema.field("created_at").type.tz == "UTC"


def test_since_and_max_jobs(fake: ServedFake, run: Run) -> None:
    """--since keeps exactly the jobs created at or after it; --max-jobs stops at N."""
    name = fake.functions[0]
    jobs = expected_jobs(fake.functions)[name]
    since = datetime.fromisoformat(jobs[300]["created_at"])
    result = run("export", name, "--since", since.isoformat(), env=fake.variables())
    assert result.returncode == 0, result.stderr
    got = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    keep = [j["id"] for j in jobs if datetime.fromisoformat(j["created_at"]) >= since]
    assert got == keep
    assert len(got) == 301

    result = run("export", *fake.functions, "--max-jobs", "250", env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 250


def test_unknown_function_fails_alone(fake: ServedFake, run: Run, tmp_path: Path) -> None:
    """An unknown function exits 1 and is named; the other function is exported in full."""
    out = tmp_path / "jobs.jsonl"
    args = ("export", fake.functions[0], "acme/nope", "-o", str(out))
    result = run(*args, env=fake.variables())
    assert result.returncode == 1
    assert "failed: acme/nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert DEFAULT_API_KEY not in result.stderr
    assert len(read_jsonl(out)) == JOBS

    # The state is kept for a retry of the failed listing: same arguments only.
    other = run(*args, "--status", "error", "--resume", env=fake.variables())
    assert other.returncode == 2
    assert "other arguments" in other.stderr
    again = run(*args, "--resume", env=fake.variables())
    assert again.returncode == 1
    assert "exported 0 jobs" in again.stderr
    assert len(read_jsonl(out)) == JOBS


@pytest.mark.parametrize(
    "args",
    [
        ["export", "noslash"],
        ["export", "a/b", "--status", "bogus"],
        ["export", "a/b", "--format", "xml"],
        ["export", "a/b", "--concurrency", "0"],
        ["export", "a/b", "--since", "yesterday"],
        ["export"],
        ["export", "a/b", "--format", "parquet", "--resume"],
        ["export", "a/b", "--resume"],
    ],
)
def test_usage_errors_exit_2(run: Run, args: list[str], tmp_path: Path) -> None:
    """Malformed arguments exit 2 with a message and no traceback."""
    env = {"SIEVE_API_KEY": "sk-unused", "SIEVE_API_URL": "http://127.0.0.1:9"}
    result = run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "sieve-async" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_key_is_one_clear_line(run: Run, tmp_path: Path) -> None:
    """No SIEVE_API_KEY: exit 2, a message naming it, no traceback."""
    assert "SIEVE_API_KEY" not in os.environ
    result = run("export", "sieve/retalker", cwd=tmp_path)
    assert result.returncode == 2
    assert "SIEVE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def wait_until(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], *, ended: str, stuck: str
) -> None:
    """Poll ``ready`` while ``proc`` runs: ``ended`` if it exits first, ``stuck`` after 30 s."""
    deadline = time.monotonic() + 30
    while not ready():
        assert proc.poll() is None, ended
        assert time.monotonic() < deadline, stuck
        time.sleep(0.02)


def saved_state(state: Path) -> dict[str, Any]:
    """The export's resume state as last saved, or ``{}`` before the first save (or mid-write)."""
    try:
        document: dict[str, Any] = json.loads(state.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return document


def wait_for_progress(state: Path, out: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the export has saved a state covering some jobs and written more lines since."""

    def progressed() -> bool:
        saved = saved_state(state)
        return bool(saved.get("jobs")) and out.stat().st_size > saved["length"]

    wait_until(
        proc,
        progressed,
        ended="the export finished before it could be interrupted",
        stuck="the export made no progress",
    )


@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_interrupted_export_resumes_with_every_job_once(
    slow_fake: ServedFake, run: Run, tmp_path: Path, how: str
) -> None:
    """kill -9 or SIGINT mid-export, then --resume: every job exactly once, state removed."""
    out = tmp_path / "jobs.jsonl"
    state = tmp_path / "jobs.jsonl.state.json"
    args = [CLI, "export", *slow_fake.functions, "--concurrency", "2", "-o", str(out)]
    with subprocess.Popen(args, env=slow_fake.env(), stderr=subprocess.PIPE) as proc:
        try:
            wait_for_progress(state, out, proc)
            proc.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
            _, stderr = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    if how == "kill -9":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130
        assert b"--resume" in stderr
    assert state.exists()
    partial = len(out.read_bytes().splitlines())
    assert 0 < partial < 6000

    slow_fake.fake.latency = 0  # the resume need not be slow
    result = run(*args[1:], "--resume", env=slow_fake.variables())
    assert result.returncode == 0, result.stderr
    ids = [line["id"] for line in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 6000
    expected = expected_jobs(slow_fake.functions, jobs=2000, seed=0)
    assert set(ids) == {job["id"] for jobs in expected.values() for job in jobs}
    assert not state.exists()


def test_demo_exits_0_and_writes_its_file(run: Run, tmp_path: Path) -> None:
    """demo needs no key, exports every job of its fake server and exits 0."""
    assert not any(name.startswith("SIEVE_") for name in os.environ)
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = read_jsonl(tmp_path / "sieve-demo-jobs.jsonl")
    assert len(lines) > 1000
    assert len({line["id"] for line in lines}) == len(lines)
    assert f"exported {len(lines):,} jobs" in result.stderr


def test_python_m_runs_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """python -m sieve_async is the same command (run here as ``-m`` runs it: runpy)."""
    monkeypatch.setattr(sys, "argv", [sys.executable, "--version"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("sieve_async", run_name="__main__")
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("sieve-async ")


def failed_export_with_state(run: Run, fake: ServedFake, out: Path) -> tuple[list[str], Path]:
    """An export that leaves its resume state: one listing in full, one unknown function."""
    args = ["export", fake.functions[0], "acme/nope", "-o", str(out)]
    result = run(*args, env=fake.variables())
    assert result.returncode == 1, result.stderr
    state = out.with_name(out.name + ".state.json")
    assert state.exists()
    return args, state


def test_second_export_into_the_same_file_exits_2_naming_the_holder(
    slow_fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """While one export writes a file, another into it exits 2 naming the first's PID; the
    first finishes with every job once."""
    out = tmp_path / "jobs.jsonl"
    lock = tmp_path / "jobs.jsonl.lock"
    args = [CLI, "export", *slow_fake.functions, "--concurrency", "1", "-o", str(out)]
    with subprocess.Popen(args, env=slow_fake.env(), stderr=subprocess.PIPE) as first:
        try:
            wait_until(
                first,
                lambda: out.exists() and out.stat().st_size > 0,
                ended="the first export ended before the second started",
                stuck="the first export wrote nothing",
            )
            second = run(*args[1:], env=slow_fake.variables())
            slow_fake.fake.latency = 0  # the first need not be slow any more
            _, stderr = first.communicate(timeout=TIMEOUT)
        finally:
            if first.poll() is None:
                first.kill()
    assert second.returncode == 2, second.stderr
    assert f"process {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, stderr
    ids = [line["id"] for line in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 6000
    assert not lock.exists()


def test_resume_refuses_an_output_changed_by_hand(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """--resume after the covered part of the file was edited exits 2 and leaves it as it is."""
    out = tmp_path / "jobs.jsonl"
    args, _ = failed_export_with_state(run, fake, out)
    lines = out.read_bytes().splitlines(keepends=True)
    lines.insert(len(lines) // 2, b'{"id": "added by hand"}\n')
    edited = b"".join(lines)
    out.write_bytes(edited)

    result = run(*args, "--resume", env=fake.variables())
    assert result.returncode == 2, result.stderr
    assert str(out) in result.stderr
    assert "changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == edited


@pytest.mark.parametrize(
    "damage",
    ["not json", "offset is text", "listings is a list", "length is missing", "done is text"],
)
def test_damaged_state_exits_2_naming_the_file(
    fake: ServedFake, run: Run, tmp_path: Path, damage: str
) -> None:
    """A resume state that is not JSON or has keys of the wrong type: exit 2, the file named."""
    out = tmp_path / "jobs.jsonl"
    args, state = failed_export_with_state(run, fake, out)
    doc = json.loads(state.read_bytes())
    listings = doc["listings"]
    if damage == "not json":
        state.write_bytes(state.read_bytes()[:-20])
    else:
        if damage == "offset is text":
            listings[fake.functions[0]]["checkpoint"] = {
                **(listings[fake.functions[0]]["checkpoint"] or {}),
                "version": 1,
                "listing": f"/v2/functions/{fake.functions[0]}/jobs",
                "offset": "ten",
            }
            listings[fake.functions[0]]["done"] = False
        elif damage == "listings is a list":
            doc["listings"] = list(listings)
        elif damage == "length is missing":
            del doc["length"]
        elif damage == "done is text":
            listings["acme/nope"]["done"] = "no"
        state.write_text(json.dumps(doc))

    result = run(*args, "--resume", env=fake.variables())
    assert result.returncode == 2, result.stderr
    assert str(state) in result.stderr
    assert "Traceback" not in result.stderr


def test_csv_raw_formulas_is_a_documented_switch(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """--csv-raw-formulas is in --help; without formula-like cells it changes nothing."""
    help_text = run("export", "--help").stdout
    assert "--csv-raw-formulas" in help_text
    plain, raw = tmp_path / "plain.csv", tmp_path / "raw.csv"
    name = fake.functions[0]
    result = run("export", name, "-o", str(plain), env=fake.variables())
    assert result.returncode == 0, result.stderr
    result = run("export", name, "-o", str(raw), "--csv-raw-formulas", env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert raw.read_bytes() == plain.read_bytes()
    result = run("export", name, "--csv-raw-formulas", env=fake.variables())
    assert result.returncode == 2
    assert "CSV" in result.stderr


def logging_setup() -> list[tuple[str, list[logging.Handler], int, bool]]:
    return [
        (name, list(log.handlers), log.level, log.propagate)
        for name in cli._LOGGERS
        for log in [logging.getLogger(name)]
    ]


def test_a_run_in_process_leaves_collector_signals_and_logging_as_they_were(
    fake: ServedFake, run: Run
) -> None:
    """`cli.run` of an export, as `main` would run it but without the collector tuning: the
    thresholds, the frozen objects, the signal handlers and the loggers are as before."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    loggers = logging_setup()
    result = run("export", fake.functions[0], "-vv", "--max-jobs", "10", env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 10
    assert "DEBUG" in result.stderr
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers
    assert logging_setup() == loggers


def test_main_tunes_the_collector_for_an_export(
    fake: ServedFake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's entry point freezes the start-up objects and raises the young generation's
    threshold before an export (recorded here, not applied to this process)."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(("freeze", ())))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(("set_threshold", t)))
    for name, value in fake.variables().items():
        monkeypatch.setenv(name, value)
    _, middle, oldest = gc.get_threshold()
    assert cli.main(["export", fake.functions[0], "--max-jobs", "10"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert calls == [("freeze", ()), ("set_threshold", (cli._EXPORT_GC_THRESHOLD, middle, oldest))]
    calls.clear()
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == []


def test_unfinished_output_is_refused_without_resume_or_overwrite(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """An output whose export did not finish is neither resumed nor overwritten by accident:
    exit 2 naming both ways on; --overwrite starts over, --resume continues."""
    out = tmp_path / "jobs.jsonl"
    args, state = failed_export_with_state(run, fake, out)
    before = out.read_bytes()

    again = run(*args, env=fake.variables())
    assert again.returncode == 2, again.stderr
    assert f"{out} holds an export that did not finish" in again.stderr
    assert "add --resume to continue it, or --overwrite to start over" in again.stderr
    assert out.read_bytes() == before
    assert state.exists()

    both = run(*args, "--resume", "--overwrite", env=fake.variables())
    assert both.returncode == 2
    assert "pick one" in both.stderr

    over = run("export", fake.functions[1], "-o", str(out), "--overwrite", env=fake.variables())
    assert over.returncode == 0, over.stderr
    assert {line[FUNCTION_KEY] for line in read_jsonl(out)} == {fake.functions[1]}
    assert len(read_jsonl(out)) == JOBS
    assert not state.exists()
    # A finished output has no state beside it: writing over it needs no flag.
    plain = run("export", fake.functions[2], "-o", str(out), env=fake.variables())
    assert plain.returncode == 0, plain.stderr
    assert {line[FUNCTION_KEY] for line in read_jsonl(out)} == {fake.functions[2]}


@pytest.mark.parametrize("name", ["out.xlsx", "out.json", "out.jsonl.gz"])
def test_unknown_suffix_needs_format(fake: ServedFake, run: Run, tmp_path: Path, name: str) -> None:
    """An output suffix that is not .jsonl, .ndjson, .csv or .parquet exits 2 asking for
    --format, and writes nothing; with --format the same file is written."""
    out = tmp_path / name
    args = ("export", fake.functions[0], "--max-jobs", "5", "-o", str(out))
    result = run(*args, env=fake.variables())
    assert result.returncode == 2
    suffix = out.suffix
    assert f"from its suffix {suffix!r}" in result.stderr
    assert "pass --format jsonl, csv or parquet" in result.stderr
    assert not out.exists()
    result = run(*args, "--format", "jsonl", env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == 5


@pytest.mark.parametrize(("name", "first"), [("jobs", b"{"), ("jobs.NDJSON", b"{")])
def test_no_suffix_or_ndjson_is_jsonl(
    fake: ServedFake, run: Run, tmp_path: Path, name: str, first: bytes
) -> None:
    """No suffix at all, or .ndjson in any case, means JSONL."""
    out = tmp_path / name
    result = run(
        "export", fake.functions[0], "--max-jobs", "3", "-o", str(out), env=fake.variables()
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(first)
    assert len(read_jsonl(out)) == 3


def test_names_with_all_functions_are_refused(fake: ServedFake, run: Run, tmp_path: Path) -> None:
    """Function names together with --all-functions exit 2 instead of exporting everything."""
    out = tmp_path / "jobs.jsonl"
    result = run(
        "export", fake.functions[0], "--all-functions", "-o", str(out), env=fake.variables()
    )
    assert result.returncode == 2
    assert "pass it or name functions, not both" in result.stderr
    assert not out.exists()


def test_a_rejected_key_says_check_the_key_not_resume(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """401: the advice names SIEVE_API_KEY, and never --resume (it cannot help)."""
    out = tmp_path / "jobs.jsonl"
    env = {**fake.variables(), "SIEVE_API_KEY": "sk-wrong"}
    result = run("export", *fake.functions[:2], "-o", str(out), env=env)
    assert result.returncode == 1
    assert "the server refused the API key (401): check SIEVE_API_KEY" in result.stderr
    assert "--resume" not in result.stderr
    assert "sk-wrong" not in result.stderr
    # --all-functions fails at its first request, before any listing: the same advice.
    listing = run("export", "--all-functions", "-o", str(out), "--overwrite", env=env)
    assert listing.returncode == 1
    assert "check SIEVE_API_KEY" in listing.stderr
    assert "--resume" not in listing.stderr


def test_an_unknown_function_says_check_the_name_not_resume(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """404: the advice is to check the name, not --resume."""
    result = run("export", "acme/nope", "-o", str(tmp_path / "jobs.jsonl"), env=fake.variables())
    assert result.returncode == 1
    assert "no such function (404): check the OWNER/FUNCTION name" in result.stderr
    assert "--resume" not in result.stderr


def test_a_server_that_keeps_failing_says_resume(run: Run, tmp_path: Path) -> None:
    """A listing that still fails after the retries (429 here) is worth running again: to a
    file, with --resume; to stdout, which cannot resume, just again."""
    served = ServedFake(1, 10, faults=Faults(rate=1.0, kinds=("429",)))
    try:
        out = tmp_path / "jobs.jsonl"
        result = run("export", *served.functions, "-o", str(out), env=served.variables())
        assert result.returncode == 1
        assert (
            "the server or the network failed (after retries): run the same command with "
            "--resume to retry the failed listings"
        ) in result.stderr
        assert "SIEVE_API_KEY" not in result.stderr
        to_stdout = run("export", *served.functions, env=served.variables())
        assert to_stdout.returncode == 1
        assert "run the command again later" in to_stdout.stderr
        assert "--resume" not in to_stdout.stderr
    finally:
        served.stop()


def test_plain_http_to_a_remote_host_needs_allow_insecure_http(fake: ServedFake, run: Run) -> None:
    """http:// to a host that is not loopback is refused (exit 2) naming --allow-insecure-http;
    with it, the export runs. 0.0.0.0 is not a loopback name, yet reaches this machine."""
    url = fake.url.replace("127.0.0.1", "0.0.0.0")
    env = {**fake.variables(), "SIEVE_API_URL": url}
    args = ("export", fake.functions[0], "--max-jobs", "7")
    refused = run(*args, env=env)
    assert refused.returncode == 2
    assert f"refusing the plain http:// SIEVE_API_URL {url}" in refused.stderr
    assert "pass --allow-insecure-http" in refused.stderr
    assert "allow_insecure_http=True" not in refused.stderr
    assert refused.stdout == ""
    allowed = run(*args, "--allow-insecure-http", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert len(allowed.stdout.splitlines()) == 7


def test_summary_says_where_max_jobs_stopped_it(fake: ServedFake, run: Run) -> None:
    """A run cut short by --max-jobs says so, instead of counting its listings as neither ok
    nor failed."""
    result = run("export", *fake.functions, "--max-jobs", "250", env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert "exported 250 jobs from 3 listings (stopped at --max-jobs 250; 0 read to the end)" in (
        result.stderr
    )
    assert "0 ok" not in result.stderr


def test_summary_counts_in_the_singular(run: Run) -> None:
    """One job, one listing, one retry: no "1 retries"."""
    served = ServedFake(1, 1, faults=Faults(schedule={0: "429"}))
    try:
        result = run("export", *served.functions, env=served.variables())
    finally:
        served.stop()
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "exported 1 job from 1 listing (1 ok, 0 failed) in " in result.stderr
    assert result.stderr.rstrip().endswith(" to stdout; 1 retry")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_dev_null_is_an_output(fake: ServedFake, run: Run, fmt: str) -> None:
    """-o /dev/null (a character device) exports: no fsync, no lock, no resume state beside it;
    --resume into it is refused."""
    result = run("export", *fake.functions, "-o", os.devnull, "--format", fmt, env=fake.variables())
    assert result.returncode == 0, result.stderr
    assert f"exported {3 * JOBS:,} jobs" in result.stderr
    assert f"to {os.devnull}" in result.stderr
    assert not Path(os.devnull + ".state.json").exists()
    assert not Path(os.devnull + ".lock").exists()
    resumed = run("export", *fake.functions, "-o", os.devnull, "--resume", env=fake.variables())
    assert resumed.returncode == 2
    assert f"--resume needs a regular file, and {os.devnull} is a device or a pipe" in (
        resumed.stderr
    )


def test_a_named_pipe_is_an_output(fake: ServedFake, tmp_path: Path) -> None:
    """A FIFO (``-o >(cmd)`` in bash) is written like stdout: every job, nothing beside it."""
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)
    args = [CLI, "export", fake.functions[0], "-o", str(fifo), "--format", "jsonl"]
    with subprocess.Popen(args, env=fake.env(), stderr=subprocess.PIPE) as proc:
        try:
            with fifo.open("rb") as reader:
                lines = reader.read().splitlines()
            _, stderr = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert len(lines) == JOBS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.fifo"]


def test_a_closed_stdout_ends_quietly_with_the_sigpipe_status(fake: ServedFake) -> None:
    """``sieve-async export ... | head -n 3``: the reader goes away after three lines; the
    export stops at once, prints nothing, and exits 141 as a shell reports a SIGPIPE death."""
    command = f'{CLI} export {" ".join(fake.functions)} | head -n 3; echo "${{PIPESTATUS[0]}}" >&2'
    proc = subprocess.run(
        ["bash", "-c", command], env=fake.env(), capture_output=True, timeout=TIMEOUT, check=True
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)[FUNCTION_KEY] in fake.functions for line in lines)
    assert proc.stderr.decode() == "141\n"


def test_a_terminal_without_rich_is_told_how_to_get_the_bar(
    fake: ServedFake, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, without rich (the ``progress`` extra), the command says once how to get
    the progress bar; off a terminal it says nothing about it."""
    result = run("export", fake.functions[0], "--max-jobs", "5", env=fake.variables())
    assert "progress bar" not in result.stderr
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # as if rich were not installed
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    result = run("export", fake.functions[0], "--max-jobs", "5", env=fake.variables())
    assert result.returncode == 0, result.stderr
    hint = "sieve-async: for a progress bar: pip install 'sieve-async[progress]'\n"
    assert result.stderr.count("progress bar") == 1
    assert result.stderr.startswith(hint)


def test_incremental_exports_exactly_the_new_jobs(run: Run, tmp_path: Path) -> None:
    """--incremental STATE: the first run exports everything; after jobs land at the head, the
    next run exports exactly those, in server order; with nothing new, none."""
    served = ServedFake(2, 300, page_cap=50)
    try:
        names = served.functions
        state = tmp_path / "sieve.state"
        env = served.variables()

        def export(name: str) -> tuple[Result, list[dict[str, Any]]]:
            out = tmp_path / name
            result = run("export", *names, "--incremental", str(state), "-o", str(out), env=env)
            assert result.returncode == 0, result.stderr
            return result, read_jsonl(out)

        first, jobs = export("1.jsonl")
        assert len(jobs) == 600
        assert f"{state} updated" in first.stderr
        assert state.exists()
        assert not (tmp_path / "sieve.state.lock").exists()

        served.fake.insert_jobs(names[0], 7)
        served.fake.insert_jobs(names[1], 2)
        _, jobs = export("2.jsonl")
        new = {
            name: served.fake.jobs(name)[:count] for name, count in zip(names, (7, 2), strict=True)
        }
        assert [(j[FUNCTION_KEY], j["id"]) for j in jobs if j[FUNCTION_KEY] == names[0]] == [
            (names[0], j["id"]) for j in new[names[0]]
        ]
        assert sorted(j["id"] for j in jobs) == sorted(j["id"] for v in new.values() for j in v)

        third, jobs = export("3.jsonl")
        assert jobs == []
        assert "exported 0 jobs from 2 listings (2 ok, 0 failed)" in third.stderr
    finally:
        served.stop()


def test_incremental_with_jobs_landing_during_the_run_has_no_gap_and_no_repeat(
    run: Run, tmp_path: Path
) -> None:
    """Jobs that land at the head while a run reads are not in that run; the next run has
    them. Over the runs, every job of the listings is exported exactly once."""
    served = ServedFake(2, 400, page_cap=40, mutations=Mutations(insert_every=2, insert_count=3))
    try:
        names = served.functions
        state = tmp_path / "sieve.state"
        ids: list[str] = []
        for number in range(2):
            if number == 1:
                served.fake.mutations = Mutations()  # the last run reads a still listing
            out = tmp_path / f"{number}.jsonl"
            args = ("export", *names, "--incremental", str(state), "-o", str(out))
            result = run(*args, env=served.variables())
            assert result.returncode == 0, result.stderr
            ids += [job["id"] for job in read_jsonl(out)]
        assert served.fake.inserted, "no job landed during the first run"
        assert len(ids) == len(set(ids))
        assert set(ids) == {job["id"] for name in names for job in served.fake.jobs(name)}
    finally:
        served.stop()


def test_incremental_run_that_fails_leaves_the_state_for_a_resume(run: Run, tmp_path: Path) -> None:
    """A run whose listing fails keeps the incremental state as it was (and says so); its
    --resume finishes the run, with exactly the new jobs, and then moves the state on."""
    served = ServedFake(1, 200, page_cap=50)
    try:
        name = served.functions[0]
        state = tmp_path / "sieve.state"
        env = served.variables()
        first = ("export", name, "--incremental", str(state), "-o", str(tmp_path / "1.jsonl"))
        assert run(*first, env=env).returncode == 0
        saved = state.read_bytes()
        served.fake.insert_jobs(name, 4)
        out = tmp_path / "2.jsonl"
        args = ("export", name, "--incremental", str(state), "-o", str(out))
        served.fake.faults = Faults(rate=1.0, kinds=("429",))
        failed = run(*args, env=env)
        assert failed.returncode == 1
        assert f"{state} is unchanged" in failed.stderr
        assert "--resume" in failed.stderr
        assert state.read_bytes() == saved
        served.fake.faults = Faults()
        resumed = run(*args, "--resume", env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert [job["id"] for job in read_jsonl(out)] == [
            j["id"] for j in served.fake.jobs(name)[:4]
        ]
        assert state.read_bytes() != saved
        third = run(*args, "--overwrite", env=env)
        assert third.returncode == 0, third.stderr
        assert read_jsonl(out) == []
    finally:
        served.stop()


@pytest.mark.parametrize("extra", [["--max-jobs", "5"], ["--status", "finished"]])
def test_incremental_refuses_options_that_would_leave_gaps(
    run: Run, tmp_path: Path, extra: list[str]
) -> None:
    """--max-jobs or --status with --incremental: exit 2, nothing written."""
    state = tmp_path / "sieve.state"
    env = {"SIEVE_API_KEY": "sk-unused", "SIEVE_API_URL": "http://127.0.0.1:9"}
    result = run("export", "a/b", "--incremental", str(state), *extra, env=env)
    assert result.returncode == 2
    assert "cannot be combined with --max-jobs or --status" in result.stderr
    assert not state.exists()


def test_incremental_state_that_is_damaged_exits_2(run: Run, tmp_path: Path) -> None:
    """An incremental state that is not one exits 2 naming it."""
    state = tmp_path / "sieve.state"
    state.write_text('{"version": 1, "listings": {"a/b": [true]}}')
    env = {"SIEVE_API_KEY": "sk-unused", "SIEVE_API_URL": "http://127.0.0.1:9"}
    result = run("export", "a/b", "--incremental", str(state), env=env)
    assert result.returncode == 2
    assert f"{state}: the resume state is damaged: listings['a/b'] should be a list of ids" in (
        result.stderr
    )


def test_parquet_export_killed_halfway_resumes_with_every_job_once(
    slow_fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """kill -9 during a Parquet export, then --resume: the file reads back whole, with every
    job exactly once; the parts and the state are gone."""
    import pyarrow.parquet as pq

    out = tmp_path / "jobs.parquet"
    state = tmp_path / "jobs.parquet.state.json"
    parts = tmp_path / "jobs.parquet.parts"
    args = [CLI, "export", *slow_fake.functions, "--concurrency", "2", "-o", str(out)]
    with subprocess.Popen(args, env=slow_fake.env(), stderr=subprocess.PIPE) as proc:
        try:
            wait_until(
                proc,
                lambda: saved_state(state).get("jobs", 0) > 0,
                ended="the export finished before it could be killed",
                stuck="the export made no progress",
            )
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    covered = json.loads(state.read_bytes())["jobs"]
    assert 0 < covered < 6000
    assert not out.exists()

    refused = run(*args[1:], env=slow_fake.variables())
    assert refused.returncode == 2
    assert "add --resume to continue it" in refused.stderr

    slow_fake.fake.latency = 0
    result = run(*args[1:], "--resume", env=slow_fake.variables())
    assert result.returncode == 0, result.stderr
    assert f"{6000:,} jobs in the file" in result.stderr
    ids = pq.read_table(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 6000
    expected = expected_jobs(slow_fake.functions, jobs=2000, seed=0)
    assert set(ids) == {job["id"] for jobs in expected.values() for job in jobs}
    assert not state.exists()
    assert not parts.exists()


def test_parquet_with_a_failed_listing_reads_back_and_resumes(
    fake: ServedFake, run: Run, tmp_path: Path
) -> None:
    """A Parquet export with a failed listing still leaves a readable file of the rest, and
    keeps its parts for --resume; a part changed by hand makes --resume exit 2."""
    import pyarrow.parquet as pq

    out = tmp_path / "jobs.parquet"
    args, state = failed_export_with_state(run, fake, out)
    assert pq.read_table(out).num_rows == JOBS
    again = run(*args, "--resume", env=fake.variables())
    assert again.returncode == 1
    assert "exported 0 jobs" in again.stderr
    assert pq.read_table(out).num_rows == JOBS

    part = next((tmp_path / "jobs.parquet.parts").iterdir())
    part.write_bytes(part.read_bytes()[:-1] + b"X")
    changed = run(*args, "--resume", env=fake.variables())
    assert changed.returncode == 2
    assert "were changed after the export wrote them" in changed.stderr
    assert state.exists()
