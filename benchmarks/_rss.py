"""Peak RSS of streaming one listing, measured in a fresh process per run.

``python -m benchmarks._rss iterate|export URL JOBS`` reads the ``bench/rss`` listing of the
server at URL and prints ``{"jobs": N, "peak_rss_kib": K}``; ``export`` goes through the
command line's ``export`` into a temporary JSONL file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import resource
import sys
import tempfile

from sieve_async import SieveClient

from ._server import API_KEY

PAGE_SIZE = 500


async def _iterate(url: str) -> int:
    count = 0
    async with SieveClient(api_key=API_KEY, base_url=url) as sieve:
        async for job in sieve.list_function_jobs("bench", "rss", page_size=PAGE_SIZE):
            _ = job.id, job.status
            count += 1
    return count


def _export(url: str) -> int:
    from sieve_async import cli

    os.environ["SIEVE_API_KEY"] = API_KEY
    os.environ["SIEVE_API_URL"] = url
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "jobs.jsonl")
        argv = ["export", "bench/rss", "-o", path, "--page-size", str(PAGE_SIZE)]
        with contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(argv)
        if code:
            raise SystemExit(f"export exited with {code}")
        with open(path, "rb") as lines:
            return sum(1 for _ in lines)


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB.

    VmHWM where Linux has it: ``ru_maxrss`` of a child process also counts the RSS its parent
    had when it forked, which would hide the child's own peak behind the parent's.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    way, url = sys.argv[1], sys.argv[2]
    jobs = asyncio.run(_iterate(url)) if way == "iterate" else _export(url)
    print(json.dumps({"jobs": jobs, "peak_rss_kib": peak_rss_kib()}))


if __name__ == "__main__":
    main()
