"""Every Python block of README.md runs as written against FakeSieve.

The test adds nothing to a block: it only points the client at a FakeSieve served over HTTP
(``SIEVE_API_URL`` and ``SIEVE_API_KEY``, which ``SieveClient()`` reads) and runs each block in a
fresh namespace in an empty directory. A block with top-level ``await`` runs as the asyncio REPL
(``python -m asyncio``) or a notebook would run it; any other block runs as a script.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sieve_async.testing import FakeSieve

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """``(README.md:line, source)`` of every fenced ``python`` block."""
    text = README.read_text()
    return [
        (f"README.md:{text.count(chr(10), 0, match.start()) + 1}", match.group(1))
        for match in BLOCK.finditer(text)
    ]


BLOCKS = python_blocks()


def test_the_readme_has_the_examples_the_asyncio_section_promises() -> None:
    """The extractor finds the blocks, and the asyncio section shows the newer features."""
    assert len(BLOCKS) >= 7
    text = README.read_text()
    section = text[text.index("## Use it from asyncio") : text.index("### Stop and resume")]
    for shown in ("since=", "get_job(", "to_arrow()", "sieve_async.export("):
        assert shown in section, shown


@pytest.fixture(scope="module")
def served() -> Iterator[FakeSieve]:
    """FakeSieve's default functions over HTTP, on an event loop of its own in a thread."""
    fake = FakeSieve()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=60)
        yield fake
        asyncio.run_coroutine_threadsafe(fake.aclose(), loop).result(timeout=60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()


@pytest.mark.parametrize(("where", "source"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_readme_block_runs_as_written(
    where: str,
    source: str,
    served: FakeSieve,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The block runs to its end without an error."""
    monkeypatch.setenv("SIEVE_API_URL", served.url)
    monkeypatch.setenv("SIEVE_API_KEY", str(served.api_key))
    monkeypatch.chdir(tmp_path)
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace = {"__name__": "__main__"}
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)
