"""Exports at scale: `sieve_async.export` against the script a user would write, per format.

Each contender runs in a fresh process (so its peak RSS is its own) against one FakeSieve
listing served from another process, rounds interleaved. The scripts are what one would write
by hand with aiohttp, orjson, ``csv.writer`` and pyarrow, producing the same bytes (JSONL, CSV)
or the same Arrow schema (Parquet) as the export; `check_same_output` holds them to that.

``python -m benchmarks.export [--jobs N] [--rounds R]`` runs it on its own;
``python -m benchmarks.export one WAY FORMAT URL JOBS PATH`` is one run (what the rounds start).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ._rss import peak_rss_kib
from ._server import API_KEY, serve
from ._stats import median, median_ratio

OWNER, FUNCTION = "bench", "export"
NAME = f"{OWNER}/{FUNCTION}"
PAGE_SIZE = 500
#: Distinct jobs the server makes; a longer listing repeats them with ids of their own.
POOL = 2000
FORMATS = ("jsonl", "csv", "parquet")
WAYS = ("ours", "script")
ROW_GROUP = 50_000

FIELDS = (
    "id", "function_id", "organization_id", "function", "status", "created_at", "started_at",
    "completed_at", "inputs", "outputs", "error", "visibility", "run_id", "children", "restarts",
)  # fmt: skip
STAMPS = ("created_at", "started_at", "completed_at")


# -- the hand-written scripts -----------------------------------------------------------------


def utc_text(value: str | None) -> str | None:
    """A timestamp as UTC text, ``2025-05-30T12:00:00.000000Z`` (the API's naive form is UTC)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def utc_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def pages(url: str) -> Any:
    """Every page of the listing, as decoded dicts: the loop every script starts from."""
    headers = {"X-API-Key": API_KEY}
    jobs_url = f"{url}/v2/functions/{OWNER}/{FUNCTION}/jobs"
    async with aiohttp.ClientSession(headers=headers) as session:
        offset = 0
        while True:
            params = {"limit": PAGE_SIZE, "offset": offset}
            async with session.get(jobs_url, params=params) as response:
                response.raise_for_status()
                document = orjson.loads(await response.read())
            yield document["data"]
            if document.get("next_offset") in (-1, None):
                return
            offset = document["next_offset"]


async def script_jsonl(url: str, path: str) -> int:
    count = 0
    # Blocking writes, as a script (and the export) does them.
    with open(path, "wb") as out:  # noqa: ASYNC230
        async for jobs in pages(url):
            lines = []
            for job in jobs:
                for key in STAMPS:
                    job[key] = utc_text(job.get(key))
                job["_sieve_function"] = NAME
                lines.append(orjson.dumps(job, option=orjson.OPT_APPEND_NEWLINE))
            out.write(b"".join(lines))
            count += len(jobs)
    return count


def _cell(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


async def script_csv(url: str, path: str) -> int:
    count = 0
    with open(path, "w", newline="") as out:  # noqa: ASYNC230
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["_sieve_function", *FIELDS, "_extra"])
        async for jobs in pages(url):
            for job in jobs:
                for key in STAMPS:
                    job[key] = utc_text(job.get(key))
            writer.writerows([NAME, *(_cell(job.get(k)) for k in FIELDS), None] for job in jobs)
            count += len(jobs)
    return count


def arrow_schema() -> Any:
    import pyarrow as pa

    text, stamp = pa.string(), pa.timestamp("us", tz="UTC")
    io_fields = [
        ("type", text), ("name", text), ("data", text), ("description", text),
        ("schema", text), ("run_id", text), ("is_optional", pa.bool_()),
    ]  # fmt: skip
    restart = pa.struct([("timestamp", stamp), ("reason", text), ("type", text), ("run_id", text)])
    return pa.schema(
        [
            ("_sieve_function", text), ("id", text), ("function_id", text),
            ("organization_id", text),
            ("function", pa.struct([("name", text), ("owner_name", text)])),
            ("status", text), ("created_at", stamp), ("started_at", stamp),
            ("completed_at", stamp),
            ("inputs", pa.list_(pa.struct([("input", text), *io_fields]))),
            ("outputs", pa.list_(pa.struct([("output", pa.int32()), *io_fields]))),
            ("error", text), ("visibility", text), ("run_id", text), ("children", text),
            ("restarts", pa.list_(restart)), ("_extra", text),
        ]
    )  # fmt: skip


def _io(value: dict[str, Any]) -> dict[str, Any]:
    data, schema = value.get("data"), value.get("schema")
    return {
        **value,
        "data": None if data is None else orjson.dumps(data).decode(),
        "schema": None if schema is None else orjson.dumps(schema).decode(),
    }


def _row(job: dict[str, Any]) -> dict[str, Any]:
    outputs = []
    for index, item in enumerate(job["outputs"]):
        for part in item if isinstance(item, list) else [item]:
            outputs.append({"output": index, **_io(part)})
    return {
        **job,
        "_sieve_function": NAME,
        "created_at": utc_time(job["created_at"]),
        "started_at": utc_time(job["started_at"]),
        "completed_at": utc_time(job["completed_at"]),
        "inputs": [{"input": name, **_io(value)} for name, value in job["inputs"].items()],
        "outputs": outputs,
        "children": None if job.get("children") is None else orjson.dumps(job["children"]).decode(),
        "restarts": [{**r, "timestamp": utc_time(r.get("timestamp"))} for r in job["restarts"]],
    }


async def script_parquet(url: str, path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    count = 0
    batches: list[Any] = []
    with pq.ParquetWriter(path, schema) as writer:
        async for jobs in pages(url):
            batches.append(pa.RecordBatch.from_pylist([_row(job) for job in jobs], schema=schema))
            count += len(jobs)
            if sum(batch.num_rows for batch in batches) >= ROW_GROUP:
                writer.write_table(pa.Table.from_batches(batches))
                batches = []
        if batches:
            writer.write_table(pa.Table.from_batches(batches))
    return count


SCRIPTS = {"jsonl": script_jsonl, "csv": script_csv, "parquet": script_parquet}


# -- ours -------------------------------------------------------------------------------------


async def ours(url: str, path: str, fmt: str) -> int:
    import sieve_async

    async with sieve_async.SieveClient(api_key=API_KEY, base_url=url) as sieve:
        result = await sieve_async.export(
            sieve,
            [NAME],
            path,
            format=fmt,
            page_size=PAGE_SIZE,  # type: ignore[arg-type]
        )
    if result.failures:
        raise RuntimeError(f"the export failed: {result.failures}")
    return result.jobs


# -- one run, in a process of its own ---------------------------------------------------------


def _one(way: str, fmt: str, url: str, path: str) -> dict[str, Any]:
    if fmt == "parquet":
        import pyarrow.parquet  # noqa: F401 - imported before the clock starts, by both ways
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    if way == "ours":
        jobs = asyncio.run(ours(url, path, fmt))
    else:
        jobs = asyncio.run(SCRIPTS[fmt](url, path))
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    return {"jobs": jobs, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_kib": peak_rss_kib()}


def run_one(way: str, fmt: str, url: str, jobs: int, path: Path) -> dict[str, Any]:
    """One export in a fresh process; its wall seconds (imports excluded) and peak RSS."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.export", "one", way, fmt, url, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if report["jobs"] != jobs:
        raise RuntimeError(f"{way} {fmt} wrote {report['jobs']} of {jobs} jobs")
    return report


def check_same_output(fmt: str, ours_path: Path, script_path: Path) -> None:
    """The script and the export wrote the same thing: the bytes, or for Parquet the schema
    and the values."""
    if fmt != "parquet":
        if ours_path.read_bytes() != script_path.read_bytes():
            raise RuntimeError(f"{fmt}: the export and the script wrote different bytes")
        return
    import pyarrow.parquet as pq

    mine, theirs = pq.read_table(ours_path), pq.read_table(script_path)
    if mine.schema != theirs.schema or not mine.equals(theirs):
        raise RuntimeError(f"parquet: the export's table differs from the script's:\n{mine.schema}")


def run(
    jobs: int, rounds: int, *, seed: int = 0, check: bool = True, formats: tuple[str, ...] = FORMATS
) -> dict[str, Any]:
    """Medians over ``rounds`` interleaved rounds of every (way, format), and same-round ratios
    ours ÷ script as throughput (script seconds ÷ our seconds: above 1 is faster than it)."""
    contenders = [(way, fmt) for fmt in formats for way in WAYS]
    seconds: dict[tuple[str, str], list[float]] = {c: [] for c in contenders}
    rss: dict[tuple[str, str], list[float]] = {c: [] for c in contenders}
    cpu: dict[tuple[str, str], list[float]] = {c: [] for c in contenders}
    shuffle = random.Random(seed).shuffle
    with serve({NAME: jobs}, pool_size=POOL) as url, tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            shuffle(contenders)
            for way, fmt in contenders:
                path = Path(folder, f"{way}.{fmt}")
                path.unlink(missing_ok=True)
                report = run_one(way, fmt, url, jobs, path)
                seconds[way, fmt].append(report["seconds"])
                rss[way, fmt].append(report["peak_rss_kib"] / 1024)
                cpu[way, fmt].append(report["cpu_seconds"])
            if round_ == 0 and check:
                for fmt in formats:
                    mine, theirs = Path(folder, f"ours.{fmt}"), Path(folder, f"script.{fmt}")
                    check_same_output(fmt, mine, theirs)
    results: dict[str, Any] = {"jobs": jobs, "rounds": rounds}
    for fmt in formats:
        results[fmt] = {
            "ours_s": median(seconds["ours", fmt]),
            "script_s": median(seconds["script", fmt]),
            "ratio": median_ratio(seconds["script", fmt], seconds["ours", fmt]),
            "ours_cpu_s": median(cpu["ours", fmt]),
            "script_cpu_s": median(cpu["script", fmt]),
            "ours_rss_mib": max(rss["ours", fmt]),
            "script_rss_mib": max(rss["script", fmt]),
        }
    return results


TARGETS = {"jsonl": 0.95, "parquet": 1.0, "csv": 0.9}


def lines(results: dict[str, Any]) -> list[str]:
    """The figures of `run`, one line per format."""
    out = []
    for fmt in FORMATS:
        if fmt not in results:
            continue
        r = results[fmt]
        out.append(
            f"{fmt:8s} ours ÷ script {r['ratio']:.2f}x (target ≥ {TARGETS[fmt]}); "
            f"ours {r['ours_s']:.2f} s ({r['ours_cpu_s']:.2f} s CPU), script {r['script_s']:.2f} s "
            f"({r['script_cpu_s']:.2f} s CPU); peak RSS ours "
            f"{r['ours_rss_mib']:.0f} MiB, script {r['script_rss_mib']:.0f} MiB"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["one"]:
        way, fmt, url, path = argv[1:5]
        print(json.dumps(_one(way, fmt, url, path)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="skip the same-output check")
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args(argv)
    formats = tuple(args.formats.split(","))
    results = run(args.jobs, args.rounds, check=not args.no_check, formats=formats)
    print(f"{args.jobs:,} jobs, {args.rounds} interleaved rounds (medians; ratio > 1: ours faster)")
    print("\n".join(lines(results)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
