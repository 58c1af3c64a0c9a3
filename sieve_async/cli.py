"""Command line: ``sieve-async export | demo | fake-server``.

Exit codes: 0 everything exported; 1 some listings failed (each is named on stderr, the others
are in the output) or another API error; 2 a usage error (bad arguments, no API key, another
export writing the same file, a resume state that is damaged or written for other arguments,
an output changed since its state was saved); 130 interrupted, after the resume state was saved;
141 (128 + SIGPIPE, as a shell reports ``yes | head``) the reader of stdout or a pipe went away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from . import __version__
from ._client import SieveClient
from ._exceptions import (
    SieveAuthenticationError,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
    SieveError,
    SieveNotFoundError,
    SievePermissionError,
    SieveRateLimitError,
    SieveServerError,
)
from ._export import (
    FORMATS,
    FUNCTION_KEY,
    ExportResult,
    ExportState,
    OutputLockedError,
    StateError,
    advance_heads,
    export,
    load_heads,
    lock_output,
    save_heads,
    state_path_for,
)
from ._exporter import (
    Resumed,
    export_params,
    finish_parquet,
    keeps_state,
    open_writer,
    output_format,
    resume_state,
    unfinished,
)
from ._models import FunctionRef
from ._policy import check_base_url
from ._validate import STATUSES
from .testing import DEFAULT_API_KEY, FakeSieve, Faults

__all__ = ["main", "run"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
#: What a shell reports for a command killed by SIGPIPE, as ``yes | head`` ends ``yes``.
EXIT_BROKEN_PIPE: Final = 128 + signal.SIGPIPE

#: Function names the fake server and the demo serve, before numbered ones.
_FAKE_NAMES: Final = (
    "sieve/retalker",
    "sieve/whisper",
    "sieve/dubbing",
    "acme/transcribe",
    "acme/lipsync",
    "acme/captions",
)
#: The demo's functions and their job counts: a few big listings, some small, one empty.
_DEMO_FUNCTIONS: Final = dict(zip(_FAKE_NAMES, (6000, 4500, 3000, 1500, 700, 0), strict=True))


class UsageError(Exception):
    """A problem with the command's arguments or files, reported with exit code 2."""


# -- argument parsing ------------------------------------------------------------------------


def _function_ref(text: str) -> FunctionRef:
    try:
        return FunctionRef.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (expected OWNER/FUNCTION)") from exc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    if text == "0":
        return 0
    return _positive_int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or date-time such as 2025-06-01T12:00, got {text!r}"
        ) from exc
    # The API's timestamps are UTC; a time without an offset means UTC too.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def build_parser() -> argparse.ArgumentParser:
    """The ``sieve-async`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="sieve-async",
        description="Read Sieve job history at scale.",
        epilog=(
            "exit codes: 0 ok, 1 some listings failed, 2 usage error, 130 interrupted, "
            "141 the reader of the output went away (| head)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show retries and other warnings on stderr (-vv: every request)",
    )

    ex = commands.add_parser(
        "export",
        parents=[verbose],
        help="export the jobs of functions to JSONL, CSV or Parquet",
        description=(
            "Export the jobs of one or more functions. Reads SIEVE_API_KEY, and SIEVE_API_URL "
            f"if set. JSONL lines are the server's job objects plus {FUNCTION_KEY!r} (the "
            "function's OWNER/NAME), with timestamps in UTC as 2025-05-30T12:00:00.123456Z, "
            "as in CSV; Parquet types nested fields as structs and lists."
        ),
    )
    ex.add_argument(
        "functions", nargs="*", type=_function_ref, metavar="OWNER/FUNCTION", help="functions"
    )
    ex.add_argument("--all-functions", action="store_true", help="every function the key can see")
    ex.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    ex.add_argument(
        "--since",
        type=_timestamp,
        metavar="ISO_DATETIME",
        help="only jobs created at or after this time (UTC unless an offset is given)",
    )
    ex.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file; '-' or none for stdout",
    )
    ex.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the file's suffix, else jsonl)",
    )
    ex.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="listings read at once (default 8)",
    )
    ex.add_argument("--max-jobs", type=_positive_int, metavar="N", help="stop after N jobs in all")
    ex.add_argument(
        "--page-size",
        type=_positive_int,
        metavar="N",
        help="new jobs to ask for per request (after the first, the limit sent is one more)",
    )
    ex.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue an interrupted export of the same arguments into the same file (refused "
            "if the part already written has changed since)"
        ),
    )
    ex.add_argument(
        "--incremental",
        type=Path,
        metavar="STATE",
        help=(
            "export only the jobs that are new since the last finished run with this STATE "
            "file (the first run exports everything); STATE is updated when a run finishes"
        ),
    )
    ex.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help=(
            "accept a plain http:// SIEVE_API_URL to a host that is not loopback (the API key "
            "then travels unencrypted)"
        ),
    )
    ex.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "start over into an output left by an interrupted or failed export (without it, or "
            "--resume, such an output is refused)"
        ),
    )
    ex.add_argument(
        "--csv-raw-formulas",
        action="store_true",
        help=(
            "write CSV cells starting with = + - @ tab or CR as they are; by default they get a "
            "leading ' so that a spreadsheet does not run them as formulas"
        ),
    )

    demo = commands.add_parser(
        "demo",
        parents=[verbose],
        help="export from a built-in fake Sieve API, no account needed",
    )
    demo.add_argument(
        "-o",
        "--output",
        default="sieve-demo-jobs.jsonl",
        metavar="FILE",
        help="where to write (default: sieve-demo-jobs.jsonl)",
    )
    demo.add_argument(
        "--variety",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "serve the full range of values the API's OpenAPI document allows: offsets on "
            "times, nulls, restarts, inputs of any JSON type, big integers (default: on; "
            "--no-variety serves jobs as the live API usually sends them)"
        ),
    )

    fake = commands.add_parser(
        "fake-server",
        parents=[verbose],
        help="run a fake Sieve API to test your own code against",
        description=(
            "Serve deterministic job histories until Ctrl-C or SIGTERM. The first line printed "
            "is 'listening on URL'."
        ),
    )
    fake.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    fake.add_argument(
        "--port",
        type=_non_negative_int,
        default=8080,
        help="port, 0 for any free one (default: %(default)s)",
    )
    fake.add_argument(
        "--functions",
        type=_positive_int,
        default=3,
        metavar="N",
        help="how many functions to serve (default: %(default)s)",
    )
    fake.add_argument(
        "--jobs",
        type=_non_negative_int,
        default=1000,
        metavar="N",
        help=(
            "jobs per function, made as they are served: millions are fine "
            "(default: %(default)s)"
        ),
    )
    fake.add_argument(
        "--shape",
        choices=("envelope", "bare"),
        help="force one response shape (default: the shapes the API uses today)",
    )
    fake.add_argument(
        "--page-cap",
        type=_positive_int,
        metavar="N",
        help="at most N items per page (default: no cap, a page holds what limit asks)",
    )
    fake.add_argument(
        "--fault-rate",
        type=_fraction,
        default=0.0,
        metavar="R",
        help=(
            "share of listing requests that fail (429, 5xx, dropped, truncated...) "
            "(default: %(default)s)"
        ),
    )
    fake.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="seconds per request (default: %(default)s)",
    )
    fake.add_argument(
        "--seed", type=int, default=0, help="seeds job histories and faults (default: %(default)s)"
    )
    fake.add_argument("--api-key", help=f"the key to require (default: {DEFAULT_API_KEY})")
    fake.add_argument(
        "--variety",
        action="store_true",
        help=(
            "serve the full range of values the API's OpenAPI document allows: offsets on "
            "times, nulls, restarts, inputs of any JSON type, big integers (default: off, "
            "jobs as the live API usually sends them)"
        ),
    )
    fake.add_argument(
        "--timestamps",
        choices=("naive", "offset"),
        default="naive",
        help=(
            "write times without an offset as the live API does, or with +00:00 as the "
            "document's date-time format asks (default: %(default)s)"
        ),
    )
    return parser


# -- output ----------------------------------------------------------------------------------


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now, so log lines print above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # a log line must never break the export
            self.handleError(record)


#: The loggers `_configure_logging` sets up.
_LOGGERS: Final = ("sieve_async", "aiohttp", "sieve_async.export")


def _configure_logging(verbose: int) -> None:
    # Each retry is an INFO record, shown from -v; -vv adds a DEBUG record per request.
    level = logging.ERROR if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("sieve_async", "aiohttp"):
        log = logging.getLogger(name)
        log.handlers = [handler]
        log.setLevel(level if name != "aiohttp" else max(level, logging.ERROR))
        log.propagate = False
    # What the export itself warns about (a listing out of order under --since) changes the
    # output, so it is always shown.
    logging.getLogger("sieve_async.export").setLevel(min(level, logging.WARNING))


@contextlib.contextmanager
def _logging_to_stderr(verbose: int) -> Iterator[None]:
    """`_configure_logging` for the time of one command, then the loggers as they were."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved = [(log, log.handlers, log.level, log.propagate) for log in loggers]
    _configure_logging(verbose)
    try:
        yield
    finally:
        for log, handlers, level, propagate in saved:
            log.handlers = handlers
            log.setLevel(level)
            log.propagate = propagate


def _error(message: str) -> None:
    print(f"sieve-async: {message}", file=sys.stderr, flush=True)


#: What to install for the progress bar (rich is an extra, not a dependency of the library).
_PROGRESS_EXTRA: Final = "sieve-async[progress]"


class _Progress:
    """A rich progress bar on stderr, when stderr is a terminal and rich is installed; on a
    terminal without rich, one line saying how to get it."""

    def __init__(self, sieve: SieveClient, listings: int) -> None:
        self._sieve = sieve
        self._bar: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        if not sys.stderr.isatty():
            return
        try:
            from rich.console import Console  # noqa: PLC0415 - optional extra
            from rich.progress import (  # noqa: PLC0415 - optional extra
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            _error(f"for a progress bar: pip install '{_PROGRESS_EXTRA}'")
            return
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("listings"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "{task.fields[jobs]:,} jobs · {task.fields[pages]:,} pages · "
                "{task.fields[rate]:,.0f} jobs/s · {task.fields[retries]}"
            ),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task(
            "export",
            total=listings,
            jobs=0,
            pages=0,
            rate=0.0,
            retries=_count(0, "retry", "retries"),
        )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, result: ExportResult) -> None:
        """Show the live numbers of an export."""
        if self._bar is None:
            return
        stats = self._sieve.stats
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._bar.update(
            self._task,
            completed=result.done + len(result.failures),
            jobs=result.total_jobs,
            pages=stats.pages,
            rate=result.jobs / elapsed,
            retries=_count(stats.retries, "retry", "retries"),
        )


def _report(
    result: ExportResult, target: str, extra: str = "", *, max_jobs: int | None = None
) -> None:
    """The summary line, then one line per failed listing, on stderr."""
    _error(_summary(result, target, max_jobs) + extra)
    for ref, error in result.failures:
        _error(f"failed: {ref}: {error}")


def _count(number: int, word: str, plural: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``1 retry``, ``3 retries``."""
    return f"{number:,} {word if number == 1 else plural or word + 's'}"


def _summary(result: ExportResult, target: str, max_jobs: int | None = None) -> str:
    rate = result.jobs / result.elapsed if result.elapsed > 0 else 0.0
    text = f"exported {_count(result.jobs, 'job')} from {_count(result.listings, 'listing')}"
    if result.truncated:
        # Listings cut short by --max-jobs are neither finished nor failed.
        limit = "" if max_jobs is None else f" {max_jobs:,}"
        text += f" (stopped at --max-jobs{limit}; {result.done} read to the end)"
    else:
        text += f" ({result.done} ok, {len(result.failures)} failed)"
    text += f" in {result.elapsed:.1f} s ({rate:,.0f} jobs/s) to {target}"
    if result.total_jobs != result.jobs:
        text += f"; {_count(result.total_jobs, 'job')} in the file"
    return text


# -- export ----------------------------------------------------------------------------------


def _pick_format(args: argparse.Namespace, path: Path | None) -> str:
    try:
        return output_format(args.format, path, how_to_name="pass --format jsonl, csv or parquet")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _refused_as_insecure(url: str) -> bool:
    """Whether the client refuses ``url`` only because it is plain HTTP to a remote host."""
    try:
        check_base_url(url, allow_insecure_http=False)
    except SieveConfigError:
        try:
            check_base_url(url, allow_insecure_http=True)
        except SieveConfigError:
            return False
        return True
    return False


def _check_export_args(args: argparse.Namespace) -> tuple[Path | None, str]:
    """The output path (``None``: stdout) and format, once every argument is checked."""
    _check_what_to_export(args)
    path = None if args.output in (None, "-") else Path(args.output)
    fmt = _pick_format(args, path)
    _check_output(args, path, fmt)
    return path, fmt


def _check_what_to_export(args: argparse.Namespace) -> None:
    if not args.functions and not args.all_functions:
        raise UsageError("name at least one OWNER/FUNCTION, or pass --all-functions")
    if args.functions and args.all_functions:
        raise UsageError(
            "--all-functions exports every function the key can see; pass it or name functions, "
            "not both"
        )
    url = os.environ.get("SIEVE_API_URL")
    if url and not args.allow_insecure_http and _refused_as_insecure(url):
        raise UsageError(
            f"refusing the plain http:// SIEVE_API_URL {url}: the API key would travel "
            "unencrypted. Use https://, or pass --allow-insecure-http if you really mean it"
        )
    if args.incremental is not None and (args.max_jobs or args.status):
        # A run cut short by --max-jobs would leave a gap behind the jobs it wrote; a job
        # entering a --status filter later is not at the head where the next run looks.
        raise UsageError(
            "--incremental exports every new job: it cannot be combined with --max-jobs or "
            "--status (filter the output instead)"
        )
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the output and --overwrite starts it over: pick one")


def _check_output(args: argparse.Namespace, path: Path | None, fmt: str) -> None:
    if fmt == "parquet":
        if path is None:
            raise UsageError("--format parquet needs a file: -o FILE")
        try:
            import pyarrow  # noqa: F401, PLC0415 - only to report a missing extra early
        except ImportError:
            raise UsageError(
                "parquet output needs pyarrow: pip install 'sieve-async[parquet]'"
            ) from None
    if args.resume and path is None:
        raise UsageError("--resume needs an output file: -o FILE")
    if args.resume and not keeps_state(path):
        raise UsageError(f"--resume needs a regular file, and {path} is a device or a pipe")
    if args.csv_raw_formulas and fmt != "csv":
        raise UsageError(f"--csv-raw-formulas applies to CSV output only, not {fmt}")


def _params(
    args: argparse.Namespace, fmt: str, heads: dict[str, list[str | int]] | None
) -> dict[str, Any]:
    return export_params(
        args.functions,
        all_functions=bool(args.all_functions),
        status=args.status,
        since=args.since,
        fmt=fmt,
        csv_raw_formulas=bool(args.csv_raw_formulas),
        heads=heads,
    )


def _load_resume_state(path: Path, params: dict[str, Any]) -> Resumed | None:
    """The state to resume from and the checksum of the output it covers, both checked."""
    try:
        return resume_state(path, params)
    except StateError as exc:
        raise StateError(f"{exc}; drop --resume to start over") from exc


async def _export_command(args: argparse.Namespace, live: list[ExportResult]) -> int:
    path, fmt = _check_export_args(args)
    with contextlib.ExitStack() as locks:
        # Held from before the state is read until the summary: two exports into one file would
        # interleave their lines and their states, and two incremental runs from one state
        # would both export the same new jobs.
        if path is not None and keeps_state(path):
            locks.enter_context(lock_output(path))
        if args.incremental is not None:
            locks.enter_context(lock_output(args.incremental))
        return await _export_to(path, fmt, args, live)


async def _functions_to_export(
    sieve: SieveClient, args: argparse.Namespace, state: ExportState | None
) -> list[FunctionRef]:
    """A resumed export's functions, or those named, or (``--all-functions``) every one."""
    if state is not None:
        return [FunctionRef.parse(name) for name in state.listings]
    refs: list[FunctionRef] = list(args.functions)
    if args.all_functions:
        refs += [function.ref async for function in sieve.list_functions()]
    return list(dict.fromkeys(refs))


def _refuse_unfinished_output(path: Path, args: argparse.Namespace) -> None:
    """Refuse to write over the output of an export that did not finish, unless asked to."""
    if args.resume or args.overwrite or not unfinished(path):
        return
    raise UsageError(
        f"{path} holds an export that did not finish (its resume state is "
        f"{state_path_for(path)}): add --resume to continue it, or --overwrite to start over"
    )


async def _export_to(
    path: Path | None, fmt: str, args: argparse.Namespace, live: list[ExportResult]
) -> int:
    stateful = keeps_state(path)
    if path is not None and stateful:
        _refuse_unfinished_output(path, args)
    heads = None if args.incremental is None else load_heads(args.incremental)
    params = _params(args, fmt, heads)
    resume = _load_resume_state(path, params) if args.resume and path is not None else None
    if args.resume and resume is None:
        _error("no resume state beside the output; starting from the beginning")
    state = ExportState(params=params) if resume is None else resume[0]
    state_path = state_path_for(path) if path and stateful else None
    client = SieveClient(
        max_connections=args.concurrency, allow_insecure_http=args.allow_insecure_http
    )
    async with client as sieve:
        refs = await _functions_to_export(sieve, args, None if resume is None else resume[0])
        opened = open_writer(path, fmt, resume, raw_formulas=args.csv_raw_formulas)
        with _Progress(sieve, len(refs)) as progress, opened as writer:

            def on_progress(result: ExportResult) -> None:
                if not live:
                    live.append(result)
                progress.update(result)

            result = await export(
                sieve,
                refs,
                writer,
                concurrency=args.concurrency,
                status=args.status,
                page_size=args.page_size,
                since=args.since,
                max_jobs=args.max_jobs,
                state=state,
                state_path=state_path,
                on_progress=on_progress,
                stop_at=heads,
            )
        finish_parquet(writer, state_path)
    return _conclude(result, path, args, heads, state, retries=sieve.stats.retries)


def _conclude(
    result: ExportResult,
    path: Path | None,
    args: argparse.Namespace,
    heads: dict[str, list[str | int]] | None,
    state: ExportState,
    *,
    retries: int,
) -> int:
    """Report the export, move an incremental state on, advise on failures; the exit status."""
    _report(
        result,
        "stdout" if path is None else str(path),
        f"; {_count(retries, 'retry', 'retries')}" if retries else "",
        max_jobs=args.max_jobs,
    )
    if heads is not None and args.incremental is not None:
        _advance_incremental(args.incremental, heads, state, result)
    if result.failures:
        resumable = path is not None and keeps_state(path)
        for line in _advice([error for _, error in result.failures], resumable=resumable):
            _error(line)
        return EXIT_FAILED
    return EXIT_OK


def _advance_incremental(
    path: Path, heads: dict[str, list[str | int]], state: ExportState, result: ExportResult
) -> None:
    """Move the incremental state on past a run that finished; leave it for one that did not,
    whose output is then finished with --resume (or written again from the same state)."""
    if result.failures or result.pending:
        _error(f"{path} is unchanged: the next run starts where this one did")
        return
    save_heads(path, advance_heads(heads, state))
    _error(f"{path} updated: the next --incremental run exports only jobs newer than these")


#: Failures that may pass by themselves: a later attempt can succeed where this one gave up.
_TRANSIENT: Final = (SieveServerError, SieveRateLimitError, SieveConnectionError, SieveDecodeError)


def _advice(errors: Sequence[BaseException], *, resumable: bool) -> list[str]:
    """What to do about ``errors``, one line per kind of failure, in a fixed order.

    Only a failure that may pass by itself (5xx, 429, timeouts, connections, a cut body) is
    worth running again; a rejected key or an unknown name fails the same way every time.
    """
    kinds = {type(error) for error in errors}
    lines = []
    if any(issubclass(kind, SieveAuthenticationError) for kind in kinds):
        lines.append("the server refused the API key (401): check SIEVE_API_KEY")
    if any(issubclass(kind, SievePermissionError) for kind in kinds):
        lines.append(
            "the API key may not read those jobs (403): use a key of the organization that "
            "owns the function"
        )
    if any(issubclass(kind, SieveNotFoundError) for kind in kinds):
        lines.append(
            "no such function (404): check the OWNER/FUNCTION name, or pass --all-functions "
            "to export every function the key can see"
        )
    if any(issubclass(kind, _TRANSIENT) for kind in kinds):
        lines.append(
            "the server or the network failed (after retries): run the same command with "
            "--resume to retry the failed listings"
            if resumable
            else "the server or the network failed (after retries): run the command again later"
        )
    return lines


# -- demo and fake server --------------------------------------------------------------------


def _fake_functions(count: int, jobs: int) -> dict[str, int]:
    names = [
        _FAKE_NAMES[i] if i < len(_FAKE_NAMES) else f"acme/function-{i + 1}" for i in range(count)
    ]
    return dict.fromkeys(names, jobs)


async def _demo_command(args: argparse.Namespace) -> int:
    path = Path(args.output)
    total = sum(_DEMO_FUNCTIONS.values())
    fake = FakeSieve(
        functions=_DEMO_FUNCTIONS,
        page_cap=100,
        latency=0.01,
        faults=Faults(rate=0.03, seed=1),
        seed=1,
        variety=args.variety,
    )
    async with fake:
        _error(
            f"demo: a fake Sieve API at {fake.url} with {len(_DEMO_FUNCTIONS)} functions and "
            f"{total:,} jobs, 10 ms per request, 3% of requests failing (and retried)"
        )
        client = SieveClient(
            api_key=fake.api_key,
            base_url=fake.url,
            retry_wait_initial=0.05,
            retry_wait_max=0.5,
            max_connections=4,
        )
        refs = [FunctionRef.parse(name) for name in _DEMO_FUNCTIONS]
        async with client as sieve:
            with _Progress(sieve, len(refs)) as progress, open_writer(path, "jsonl", None) as out:
                result = await export(sieve, refs, out, concurrency=4, on_progress=progress.update)
            retries = sieve.stats.retries
    _report(result, str(path), f"; {_count(retries, 'request')} retried")
    _error(
        "next: run 'sieve-async fake-server' in another terminal and point "
        "'sieve-async export' (or your own code) at it"
    )
    return EXIT_FAILED if result.failures else EXIT_OK


async def _fake_server_command(args: argparse.Namespace) -> int:
    fake = FakeSieve(
        functions=_fake_functions(args.functions, args.jobs),
        shape=args.shape,
        page_cap=args.page_cap,
        latency=args.latency,
        seed=args.seed,
        faults=Faults(rate=args.fault_rate, seed=args.seed),
        timestamps=args.timestamps,
        variety=args.variety,
        host=args.host,
        port=args.port,
        **({} if args.api_key is None else {"api_key": args.api_key}),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with fake:
            # Read by scripts and tests that start the server with --port 0: keep it first.
            print(f"listening on {fake.url}", flush=True)
            print(f"api key: {fake.api_key}", flush=True)
            print(f"functions: {', '.join(fake.functions)} ({args.jobs:,} jobs each)", flush=True)
            print(f"export SIEVE_API_URL={fake.url} SIEVE_API_KEY={fake.api_key}", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------


def _only_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


def _run(command: Callable[[], Any]) -> int:
    try:
        return int(asyncio.run(command()))
    except BaseExceptionGroup as group:
        # Task groups wrap even a single error; report it as itself.
        error = _only_error(group)
        if error is None:
            raise
        raise error from None


#: Allocations between two collections of the youngest generation during a bulk export.
_EXPORT_GC_THRESHOLD = 50_000


def _tune_collector() -> None:
    """Collector settings for a bulk export, made by this application, never by the library.

    Every page decodes into thousands of containers that stay alive until the page is written,
    so the collector's default of a young collection every 700 allocations walks them again
    and again for nothing. Start-up objects are frozen out of every collection, and the young
    generation is collected every few tens of thousands of allocations instead.
    """
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(_EXPORT_GC_THRESHOLD, middle, oldest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sieve-async`` command; returns the exit code.

    The command of `run`, with the collector tuned for a bulk export (`_tune_collector`) first:
    settings for a whole process, made only here.
    """
    args = build_parser().parse_args(argv)
    if args.command in ("export", "demo"):
        _tune_collector()
    return _execute(args)


def run(argv: Sequence[str] | None = None) -> int:
    """Run a ``sieve-async`` command in this process; returns the exit code.

    Unlike `main`, leaves the garbage collector as it is, so that it can be called from a
    program or a test. Either way the loggers are put back as they were when the command ends,
    and ``fake-server``'s SIGINT and SIGTERM handlers last only as long as it runs. Bad
    arguments, ``--help`` and ``--version`` end in `SystemExit`, as from `argparse`.
    """
    return _execute(build_parser().parse_args(argv))


def _execute(args: argparse.Namespace) -> int:
    with _logging_to_stderr(args.verbose):
        return _dispatch(args)


def _has_state(args: argparse.Namespace) -> bool:
    """Whether an interrupted ``export`` left a resume state to continue from."""
    if args.command != "export" or args.output in (None, "-"):
        return False
    return state_path_for(Path(args.output)).exists()


def _dispatch(args: argparse.Namespace) -> int:
    live: list[ExportResult] = []
    try:
        if args.command == "export":
            return _run(lambda: _export_command(args, live))
        if args.command == "demo":
            return _run(lambda: _demo_command(args))
        return _run(lambda: _fake_server_command(args))
    except KeyboardInterrupt:
        done = f" after {live[0].total_jobs:,} jobs" if live else ""
        resume = " (run the same command with --resume to continue)" if _has_state(args) else ""
        _error(f"interrupted{done}{resume}")
        return EXIT_INTERRUPTED
    except (SieveConfigError, UsageError, StateError, OutputLockedError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except SieveError as exc:
        _error(str(exc))
        for line in _advice([exc], resumable=False):
            _error(line)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): stop quietly with the status a shell
        # gives a command SIGPIPE ended, as other tools do. Later flushes of stdout (at exit)
        # go to /dev/null instead of raising again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_FAILED
