"""`export`: the command line's export as one call from Python.

It puts together what `sieve_async._export` provides, as the command line does: the lock on the
output, the resume state beside it (checked against the arguments and the output's bytes), a
writer that continues after the bytes the state covers, and the export loop. The state records
the same arguments as the command line's, so either can resume an export the other began.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from ._client import SieveClient
from ._export import (
    FORMATS,
    CsvWriter,
    ExportResult,
    ExportState,
    JsonlWriter,
    ParquetPartsWriter,
    ParquetWriter,
    StateError,
    Writer,
    load_state,
    lock_output,
    parts_dir_for,
    state_path_for,
    verify_output,
    verify_parquet_parts,
)
from ._export import export as export_jobs
from ._models import FunctionRef, JobStatus
from ._validate import check_positive, check_status
from ._window import check_window

__all__ = ["export"]

Format = Literal["jsonl", "csv", "parquet"]


async def export(
    sieve: SieveClient,
    functions: Iterable[str | tuple[str, str] | FunctionRef],
    output: str | os.PathLike[str],
    *,
    format: Format | None = None,
    resume: bool = False,
    overwrite: bool = False,
    status: JobStatus | str | None = None,
    since: datetime | str | None = None,
    concurrency: int = 8,
    page_size: int | None = None,
    max_jobs: int | None = None,
    csv_raw_formulas: bool = False,
    on_progress: Callable[[ExportResult], None] | None = None,
) -> ExportResult:
    """Export the jobs of ``functions`` into the file ``output``, resumably.

    What ``sieve-async export`` does, from Python: JSONL (each job as the API sent it, plus
    ``"_sieve_function": "owner/name"``), CSV or Parquet; failed listings do not stop the
    others. A resume state is kept beside the output (``<output>.state.json``; Parquet also
    keeps its rows as parts in ``<output>.parts`` until it is assembled) while it runs: after
    an interruption (an exception, Ctrl-C, ``kill -9``), calling again with ``resume=True``
    checks that the part already written is unchanged, drops what was written after the last
    state, and continues, so every job ends up in the file exactly once. The state is removed
    once every listing is exported. An output that is not a regular file (``/dev/null``, a
    pipe) gets no state and no lock.

    Args:
        sieve: the client to read with.
        functions: ``"owner/name"`` strings, ``(owner, name)`` pairs or `FunctionRef`.
        output: the file to write.
        format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; by default from the suffix
            (``.jsonl`` or ``.ndjson``, ``.csv``, ``.parquet``; none means JSONL, and another
            suffix is refused).
        resume: continue the interrupted export into ``output`` (same functions and
            options); without a resume state beside it, start from the beginning.
        overwrite: start over even though ``output`` has the resume state of an interrupted
            export (without it, that is refused, so that a forgotten ``resume=True`` does not
            throw a long export away).
        status: only jobs in this status.
        since: only jobs created at or after this time (an aware ``datetime`` or an ISO
            string); each listing stops at its first older job.
        concurrency: listings read at once.
        page_size: the ``limit`` to ask for.
        max_jobs: stop once the output holds this many jobs (``result.truncated``).
        csv_raw_formulas: write CSV cells that a spreadsheet would run as formulas as they
            are (by default they get a leading ``'``).
        on_progress: called with the live `ExportResult` after each page.

    Returns:
        The `ExportResult`: jobs written (``jobs``, and ``total_jobs`` counting a resumed
        run's), listings ``completed``, and ``failures`` as ``(ref, error)``; with failures
        the state is kept, and ``resume=True`` retries the failed listings.

    Raises:
        ValueError: a bad argument (including both ``resume`` and ``overwrite``, or
            ``resume=True`` into a device or a pipe); raised before any request.
        SieveError: another export is writing ``output`` (naming its process); the resume
            state is damaged, written for other arguments, or ``output`` changed since it was
            saved; or ``output`` has a resume state and neither ``resume`` nor ``overwrite``
            was passed.
        ImportError: Parquet without pyarrow.
    """
    if isinstance(functions, str | FunctionRef):
        raise ValueError("functions must be a list of 'owner/function' names, not one name")
    refs = list(dict.fromkeys(FunctionRef.parse(spec) for spec in functions))
    if not refs:
        raise ValueError("functions must name at least one 'owner/function'")
    path = Path(output)
    fmt = _format(format, path)
    if resume and overwrite:
        raise ValueError("pass resume=True or overwrite=True, not both")
    if csv_raw_formulas and fmt != "csv":
        raise ValueError(f"csv_raw_formulas applies to CSV output only, not {fmt}")
    checked_status = check_status(status)
    window = check_window(since, None)
    check_positive(concurrency, "concurrency", allow_none=False)
    check_positive(page_size, "page_size")
    check_positive(max_jobs, "max_jobs")

    params = {
        "functions": sorted(str(ref) for ref in refs),
        "all_functions": False,
        "status": checked_status,
        "since": None if window is None or window.since is None else window.since.isoformat(),
        "format": fmt,
        "csv_raw_formulas": csv_raw_formulas,
    }
    stateful = _keeps_state(path)
    if resume and not stateful:
        raise ValueError(f"resume=True needs a regular file, and {path} is a device or a pipe")
    with contextlib.ExitStack() as held:
        # Held from before the state is read until the end: two exports into one file would
        # interleave their jobs and their states.
        if stateful:
            held.enter_context(lock_output(path))
        state_path = state_path_for(path) if stateful else None
        state, checksum = _starting_state(path, fmt, params, resume=resume, overwrite=overwrite)
        opened = _open_writer(
            path,
            fmt,
            stateful=stateful,
            state=state,
            checksum=checksum,
            raw_formulas=csv_raw_formulas,
        )
        with opened as writer:
            result = await export_jobs(
                sieve,
                refs,
                writer,
                concurrency=concurrency,
                status=checked_status,
                page_size=page_size,
                since=None if window is None else window.since,
                max_jobs=max_jobs,
                state=state,
                state_path=state_path,
                on_progress=on_progress,
            )
        if isinstance(writer, ParquetPartsWriter):
            # Readable whole even after a failure; the parts stay while a state refers to them.
            writer.assemble()
            if state_path is None or not state_path.exists():
                writer.remove_parts()
        return result


#: The format of a suffix; no suffix (``/dev/null``, ``jobs``) means JSONL.
_SUFFIXES: dict[str, Format] = {
    "": "jsonl",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}


def _format(format: str | None, path: Path) -> Format:
    if format is None:
        # A suffix naming another format (out.xlsx, out.jsonl.gz) is not silently JSONL.
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(
                f"cannot tell the format of {path} from its suffix {path.suffix!r}; pass "
                "format='jsonl', 'csv' or 'parquet'"
            )
        return fmt
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    return format  # type: ignore[return-value]  # checked just above


def _keeps_state(path: Path) -> bool:
    """Only a regular file (or one still to be made) keeps a state and a lock: a device such
    as /dev/null or a named pipe cannot be truncated back to a state, nor fsynced."""
    return not path.exists() or path.is_file()


def _starting_state(
    path: Path, fmt: str, params: dict[str, Any], *, resume: bool, overwrite: bool
) -> tuple[ExportState, hashlib._Hash | None]:
    """The state this export starts from, and the checksum of the output it covers (``None``
    for a fresh start)."""
    state_path = state_path_for(path)
    if _keeps_state(path) and state_path.exists() and not overwrite:
        written = path.exists() or parts_dir_for(path).exists()
        if written and not resume:
            raise StateError(
                f"{path} holds an export that did not finish (its resume state is "
                f"{state_path}): pass resume=True to continue it, or overwrite=True to start over"
            )
        if resume:
            state = _resume_state(path, params)
            verify = verify_parquet_parts if fmt == "parquet" else verify_output
            return state, verify(path, state)
    return ExportState(params=params), None


def _resume_state(path: Path, params: dict[str, Any]) -> ExportState:
    """The state beside ``path``, checked against this export's arguments."""
    state = load_state(state_path_for(path))
    if state is None:  # pragma: no cover - its existence was checked under the lock
        raise StateError(f"the resume state of {path} disappeared")
    if state.params != params:
        differ = sorted(k for k in {*params, *state.params} if params.get(k) != state.params.get(k))
        raise StateError(
            f"{state_path_for(path)} was written for other arguments (different "
            f"{', '.join(differ)}); repeat them, or pass overwrite=True to start over"
        )
    return state


@contextmanager
def _open_writer(
    path: Path,
    fmt: str,
    *,
    stateful: bool,
    state: ExportState,
    checksum: hashlib._Hash | None,
    raw_formulas: bool,
) -> Iterator[Writer]:
    """The writer of ``fmt`` into ``path``: after the bytes ``state`` covers when it is
    resumed (``checksum`` given), else from the start."""
    writer: Writer
    length = state.length if checksum is not None else 0
    if fmt == "parquet":
        # A Parquet file is readable only once finished: a resumable one is written as parts
        # committed with the state, and assembled at the end.
        writer = (
            ParquetPartsWriter(path, length=length, checksum=checksum)
            if stateful
            else ParquetWriter(path)
        )
    else:
        file: IO[bytes] = open(path, "r+b" if checksum is not None else "wb")  # noqa: SIM115
        if checksum is not None:
            # Bytes after the covered length were written after the last state: their jobs
            # are read again from the checkpoints.
            file.truncate(length)
            file.seek(length)
        options: dict[str, Any] = {
            "length": length,
            "owned": True,
            "durable": stateful,
            "checksum": checksum,
        }
        if fmt == "csv":
            writer = CsvWriter(file, raw_formulas=raw_formulas, **options)
        else:
            writer = JsonlWriter(file, **options)
    try:
        yield writer
    finally:
        writer.close()
