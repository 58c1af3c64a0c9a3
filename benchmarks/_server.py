"""A FakeSieve in its own process, so the client under test has a core to itself.

``python -m benchmarks._server CONFIG_JSON`` prints the server's URL on one line, then serves
until its standard input closes (the parent exiting, however it exits, ends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

API_KEY = "sk-bench-0123456789abcdef"


@contextlib.contextmanager
def serve(
    functions: dict[str, int], *, latency: float = 0.0, pool_size: int | None = None
) -> Iterator[str]:
    """Run FakeSieve with these options in a child process; yield its base URL."""
    config = {"functions": functions, "latency": latency, "pool_size": pool_size}
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server", json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the benchmark server did not start (it said {url!r})")
        yield url
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


async def _main(config: dict[str, Any]) -> None:
    from sieve_async.testing import FakeSieve

    options: dict[str, Any] = {
        "functions": config["functions"],
        "latency": config["latency"],
        "api_key": API_KEY,
    }
    if config.get("pool_size"):
        options["pool_size"] = config["pool_size"]
    async with FakeSieve(**options) as fake:
        print(fake.url, flush=True)
        loop = asyncio.get_running_loop()
        # Blocks a worker thread until the parent closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.argv[1])))
