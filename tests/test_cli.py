"""The installed ``sieve-async`` command, run as a subprocess against ``sieve-async fake-server``.

No mocks: every test starts real processes that talk real HTTP on loopback.
"""

from __future__ import annotations

import csv
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sieve_async.testing import DEFAULT_API_KEY, FakeSieve

CLI = str(Path(sys.executable).parent / "sieve-async")
FUNCTION_KEY = "_sieve_function"
SEED = 7
JOBS = 1500
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


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """Three functions of 1,500 jobs, pages capped at 100, no latency."""
    srv = Server("--functions", "3", "--jobs", str(JOBS), "--page-cap", "100", "--seed", str(SEED))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def slow_server() -> Iterator[Server]:
    """Slow enough (30 ms per page of 50) to interrupt an export halfway."""
    srv = Server("--functions", "3", "--jobs", "2000", "--page-cap", "50", "--latency", "0.03")
    yield srv
    srv.stop()


def expected_jobs(server: Server, jobs: int = JOBS, seed: int = SEED) -> dict[str, list[Any]]:
    """What the fake server serves, rebuilt in-process from the same arguments (deterministic)."""
    fake = FakeSieve(functions=dict.fromkeys(server.functions, jobs), seed=seed)
    return {name: fake.jobs(name) for name in server.functions}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [CLI, *args], check=False, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd
    )


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


def test_jsonl_holds_each_server_job_unchanged(server: Server, tmp_path: Path) -> None:
    """Each JSONL line is the server's job object plus the function key, in server order."""
    out = tmp_path / "jobs.jsonl"
    names = server.functions[:2]
    result = run("export", *names, "-o", str(out), env=server.env())
    assert result.returncode == 0, result.stderr
    assert f"exported {2 * JOBS:,} jobs" in result.stderr
    expected = expected_jobs(server)
    got: dict[str, list[Any]] = {name: [] for name in names}
    for line in read_jsonl(out):
        got[line.pop(FUNCTION_KEY)].append(line)
    for name in names:
        assert got[name] == expected[name]
    assert not (tmp_path / "jobs.jsonl.state.json").exists()


def test_stdout_is_the_default_output(server: Server) -> None:
    """Without -o the jobs go to stdout as JSONL and the summary to stderr."""
    result = run("export", server.functions[0], "--page-size", "40", env=server.env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == JOBS
    assert {json.loads(line)[FUNCTION_KEY] for line in lines} == {server.functions[0]}
    assert "to stdout" in result.stderr


def test_csv_and_parquet_read_back(server: Server, tmp_path: Path) -> None:
    """CSV (chosen by suffix) and Parquet read back with one row per job."""
    import pyarrow.parquet as pq

    expected_ids = {job["id"] for jobs in expected_jobs(server).values() for job in jobs}
    csv_path = tmp_path / "jobs.csv"
    result = run("export", "--all-functions", "-o", str(csv_path), env=server.env())
    assert result.returncode == 0, result.stderr
    with csv_path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 * JOBS
    assert {row["id"] for row in rows} == expected_ids
    assert json.loads(rows[0]["inputs"])["video"]["type"] == "sieve.Video"

    parquet_path = tmp_path / "jobs.parquet"
    result = run("export", "--all-functions", "-o", str(parquet_path), env=server.env())
    assert result.returncode == 0, result.stderr
    table = pq.read_table(parquet_path)
    assert table.num_rows == 3 * JOBS
    assert set(table.column("id").to_pylist()) == expected_ids
    assert table.schema.field("created_at").type.tz == "UTC"


def test_since_and_max_jobs(server: Server) -> None:
    """--since keeps exactly the jobs created at or after it; --max-jobs stops at N."""
    name = server.functions[0]
    jobs = expected_jobs(server)[name]
    since = datetime.fromisoformat(jobs[300]["created_at"])
    result = run("export", name, "--since", since.isoformat(), env=server.env())
    assert result.returncode == 0, result.stderr
    got = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    keep = [j["id"] for j in jobs if datetime.fromisoformat(j["created_at"]) >= since]
    assert got == keep
    assert len(got) == 301

    result = run("export", *server.functions, "--max-jobs", "250", env=server.env())
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 250


def test_unknown_function_fails_alone(server: Server, tmp_path: Path) -> None:
    """An unknown function exits 1 and is named; the other function is exported in full."""
    out = tmp_path / "jobs.jsonl"
    args = ("export", server.functions[0], "acme/nope", "-o", str(out))
    result = run(*args, env=server.env())
    assert result.returncode == 1
    assert "failed: acme/nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert DEFAULT_API_KEY not in result.stderr
    assert len(read_jsonl(out)) == JOBS

    # The state is kept for a retry of the failed listing: same arguments only.
    other = run(*args, "--status", "error", "--resume", env=server.env())
    assert other.returncode == 2
    assert "other arguments" in other.stderr
    again = run(*args, "--resume", env=server.env())
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
        ["export", "a/b", "-o", "jobs.parquet", "--resume"],
        ["export", "a/b", "--resume"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    """Malformed arguments exit 2 with a message and no traceback."""
    env = {**os.environ, "SIEVE_API_KEY": "sk-unused", "SIEVE_API_URL": "http://127.0.0.1:9"}
    result = run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "sieve-async" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_key_is_one_clear_line(tmp_path: Path) -> None:
    """No SIEVE_API_KEY: exit 2, a message naming it, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "SIEVE_API_KEY"}
    result = run("export", "sieve/retalker", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "SIEVE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def wait_for_progress(state: Path, out: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the export has saved a state covering some jobs and written more lines since."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the export finished before it could be interrupted"
        try:
            covered = json.loads(state.read_bytes())["jobs"]
        except (FileNotFoundError, ValueError):
            covered = 0
        if covered and out.stat().st_size > json.loads(state.read_bytes())["length"]:
            return
        time.sleep(0.02)
    pytest.fail("the export made no progress")


@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_interrupted_export_resumes_with_every_job_once(
    slow_server: Server, tmp_path: Path, how: str
) -> None:
    """kill -9 or SIGINT mid-export, then --resume: every job exactly once, state removed."""
    out = tmp_path / "jobs.jsonl"
    state = tmp_path / "jobs.jsonl.state.json"
    args = [CLI, "export", *slow_server.functions, "--concurrency", "2", "-o", str(out)]
    with subprocess.Popen(args, env=slow_server.env(), stderr=subprocess.PIPE) as proc:
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

    result = run(*args[1:], "--resume", env=slow_server.env())
    assert result.returncode == 0, result.stderr
    ids = [line["id"] for line in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 6000
    expected = expected_jobs(slow_server, jobs=2000, seed=0)
    assert set(ids) == {job["id"] for jobs in expected.values() for job in jobs}
    assert not state.exists()


def test_demo_exits_0_and_writes_its_file(tmp_path: Path) -> None:
    """demo needs no key, exports every job of its fake server and exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIEVE_")}
    result = run("demo", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = read_jsonl(tmp_path / "sieve-demo-jobs.jsonl")
    assert len(lines) > 1000
    assert len({line["id"] for line in lines}) == len(lines)
    assert f"exported {len(lines):,} jobs" in result.stderr


def test_python_m_runs_the_command() -> None:
    """python -m sieve_async is the same command."""
    result = subprocess.run(
        [sys.executable, "-m", "sieve_async", "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("sieve-async ")


def failed_export_with_state(server: Server, out: Path) -> tuple[list[str], Path]:
    """An export that leaves its resume state: one listing in full, one unknown function."""
    args = ["export", server.functions[0], "acme/nope", "-o", str(out)]
    result = run(*args, env=server.env())
    assert result.returncode == 1, result.stderr
    state = out.with_name(out.name + ".state.json")
    assert state.exists()
    return args, state


def test_second_export_into_the_same_file_exits_2_naming_the_holder(
    slow_server: Server, tmp_path: Path
) -> None:
    """While one export writes a file, another into it exits 2 naming the first's PID; the
    first finishes with every job once."""
    out = tmp_path / "jobs.jsonl"
    lock = tmp_path / "jobs.jsonl.lock"
    args = [CLI, "export", *slow_server.functions, "--concurrency", "1", "-o", str(out)]
    with subprocess.Popen(args, env=slow_server.env(), stderr=subprocess.PIPE) as first:
        try:
            deadline = time.monotonic() + 30
            while not (out.exists() and out.stat().st_size > 0):
                assert first.poll() is None, "the first export ended before the second started"
                assert time.monotonic() < deadline, "the first export wrote nothing"
                time.sleep(0.01)
            second = run(*args[1:], env=slow_server.env())
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


def test_resume_refuses_an_output_changed_by_hand(server: Server, tmp_path: Path) -> None:
    """--resume after the covered part of the file was edited exits 2 and leaves it as it is."""
    out = tmp_path / "jobs.jsonl"
    args, _ = failed_export_with_state(server, out)
    lines = out.read_bytes().splitlines(keepends=True)
    lines.insert(len(lines) // 2, b'{"id": "added by hand"}\n')
    edited = b"".join(lines)
    out.write_bytes(edited)

    result = run(*args, "--resume", env=server.env())
    assert result.returncode == 2, result.stderr
    assert str(out) in result.stderr
    assert "changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == edited


@pytest.mark.parametrize(
    "damage",
    ["not json", "offset is text", "listings is a list", "length is missing", "done is text"],
)
def test_damaged_state_exits_2_naming_the_file(server: Server, tmp_path: Path, damage: str) -> None:
    """A resume state that is not JSON or has keys of the wrong type: exit 2, the file named."""
    out = tmp_path / "jobs.jsonl"
    args, state = failed_export_with_state(server, out)
    doc = json.loads(state.read_bytes())
    listings = doc["listings"]
    if damage == "not json":
        state.write_bytes(state.read_bytes()[:-20])
    else:
        if damage == "offset is text":
            listings[server.functions[0]]["checkpoint"] = {
                **(listings[server.functions[0]]["checkpoint"] or {}),
                "version": 1,
                "listing": f"/v2/functions/{server.functions[0]}/jobs",
                "offset": "ten",
            }
            listings[server.functions[0]]["done"] = False
        elif damage == "listings is a list":
            doc["listings"] = list(listings)
        elif damage == "length is missing":
            del doc["length"]
        elif damage == "done is text":
            listings["acme/nope"]["done"] = "no"
        state.write_text(json.dumps(doc))

    result = run(*args, "--resume", env=server.env())
    assert result.returncode == 2, result.stderr
    assert str(state) in result.stderr
    assert "Traceback" not in result.stderr


def test_csv_raw_formulas_is_a_documented_switch(server: Server, tmp_path: Path) -> None:
    """--csv-raw-formulas is in --help; without formula-like cells it changes nothing."""
    help_text = run("export", "--help").stdout
    assert "--csv-raw-formulas" in help_text
    plain, raw = tmp_path / "plain.csv", tmp_path / "raw.csv"
    name = server.functions[0]
    result = run("export", name, "-o", str(plain), env=server.env())
    assert result.returncode == 0, result.stderr
    result = run("export", name, "-o", str(raw), "--csv-raw-formulas", env=server.env())
    assert result.returncode == 0, result.stderr
    assert raw.read_bytes() == plain.read_bytes()
    result = run("export", name, "--csv-raw-formulas", env=server.env())
    assert result.returncode == 2
    assert "CSV" in result.stderr
