"""Peak RSS streaming a short and a ten times longer listing, each in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

from ._server import serve

#: Distinct jobs the server makes; longer listings repeat them with ids of their own.
POOL = 2000


def export_available() -> bool:
    """Whether this checkout has the command line's ``export``."""
    try:
        from sieve_async import cli
    except ImportError:  # pragma: no cover - the module exists in every checkout
        return False
    parser = getattr(cli, "build_parser", None)
    if parser is None:
        return False
    try:
        parser().parse_args(["export", "bench/rss"])
    except SystemExit:
        return False
    return True


def _probe(way: str, url: str, jobs: int) -> float:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks._rss", way, url],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["jobs"] != jobs:
        raise RuntimeError(f"{way} read {report['jobs']} of {jobs} jobs")
    return float(report["peak_rss_kib"]) / 1024


def run(small: int, large: int) -> dict[str, float]:
    """Peak RSS in MiB for ``small`` and ``large`` jobs, through ``async for`` and ``export``."""
    ways = ["iterate"] + (["export"] if export_available() else [])
    results: dict[str, float] = {}
    for jobs in (small, large):
        with serve({"bench/rss": jobs}, pool_size=POOL) as url:
            for way in ways:
                results[f"{way}_{jobs}_mib"] = _probe(way, url, jobs)
    for way in ways:
        results[f"{way}_ratio"] = results[f"{way}_{large}_mib"] / results[f"{way}_{small}_mib"]
    return results
