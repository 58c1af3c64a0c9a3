"""`export`: the command line's export as one call from Python.

It puts together what `sieve_async._export` provides, as the command line does: the lock on the
output, the resume state beside it (checked against the arguments and the output's bytes), a
writer that continues after the bytes the state covers, and the export loop. The state records
the same arguments as the command line's, so either can resume an export the other began.
"""

from __future__ import annotations

import os
import stat
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
    ParquetWriter,
    StateError,
    Writer,
    load_state,
    lock_output,
    state_path_for,
    verify_output,
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
    others. JSONL and CSV keep a resume state beside the output (``<output>.state.json``)
    while they run: after an interruption (an exception, Ctrl-C, ``kill -9``), calling
    again with ``resume=True`` checks that the part already written is unchanged, drops what
    was written after the last state, and continues, so every job ends up in the file
    exactly once. The state is removed once every listing is exported.

    Args:
        sieve: the client to read with.
        functions: ``"owner/name"`` strings, ``(owner, name)`` pairs or `FunctionRef`.
        output: the file to write.
        format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; by default from the suffix
            (``.csv``, ``.parquet``), otherwise JSONL.
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
        ValueError: a bad argument (including ``resume=True`` with Parquet, which keeps no
            state, or both ``resume`` and ``overwrite``); raised before any request.
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
    if fmt == "parquet" and resume:
        raise ValueError("resume=True needs jsonl or csv: a Parquet export keeps no resume state")
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
    # Held from before the state is read until the end: two exports into one file would
    # interleave their lines and their states.
    with lock_output(path):
        state_path = None if fmt == "parquet" else state_path_for(path)
        state, checksum = None, None
        if state_path is not None and state_path.exists() and not overwrite:
            if not resume:
                raise StateError(
                    f"{path} has the resume state of an interrupted export ({state_path}): pass "
                    "resume=True to continue it, or overwrite=True to start over"
                )
            state = _resume_state(path, params)
            checksum = verify_output(path, state)
        if state is None and state_path is not None:
            state = ExportState(params=params)
        with _open_writer(path, fmt, state, checksum, raw_formulas=csv_raw_formulas) as writer:
            return await export_jobs(
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


def _format(format: str | None, path: Path) -> Format:
    if format is None:
        suffix = path.suffix.lower()
        return "csv" if suffix == ".csv" else "parquet" if suffix == ".parquet" else "jsonl"
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    return format  # type: ignore[return-value]  # checked just above


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
    state: ExportState | None,
    checksum: Any,
    *,
    raw_formulas: bool,
) -> Iterator[Writer]:
    """The writer of ``fmt`` into ``path``, continuing after the bytes ``state`` covers when
    it is resumed (``checksum`` given), else from an empty file."""
    writer: Writer
    if fmt == "parquet":
        writer = ParquetWriter(path)
    else:
        length = state.length if checksum is not None and state is not None else None
        file: IO[bytes] = open(path, "wb" if length is None else "r+b")  # noqa: SIM115 - the writer closes it
        if length is not None:
            # Bytes after the covered length were written after the last state: their jobs
            # are read again from the checkpoints.
            file.truncate(length)
            file.seek(length)
        # fsync is for files; a character device such as /dev/null refuses it.
        durable = stat.S_ISREG(os.fstat(file.fileno()).st_mode)
        options: dict[str, Any] = {
            "length": length or 0,
            "owned": True,
            "durable": durable,
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
