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
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

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
    ``"_sieve_function": "owner/name"``, its timestamps as UTC text), CSV or Parquet (nested
    fields as Arrow structs and lists); failed listings do not stop the others. A resume
    state is kept beside the output (``<output>.state.json``; Parquet also keeps its rows as
    parts in ``<output>.parts`` until the file is finished) while it runs: after an
    interruption (an exception, Ctrl-C, ``kill -9``), calling again with ``resume=True``
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
    refs = _refs(functions)
    path = Path(output)
    fmt = output_format(format, path, how_to_name="pass format='jsonl', 'csv' or 'parquet'")
    _check_options(fmt, resume=resume, overwrite=overwrite, csv_raw_formulas=csv_raw_formulas)
    checked_status = check_status(status)
    window = check_window(since, None)
    check_positive(concurrency, "concurrency", allow_none=False)
    check_positive(page_size, "page_size")
    check_positive(max_jobs, "max_jobs")
    since_time = None if window is None else window.since
    params = export_params(
        refs,
        all_functions=False,
        status=checked_status,
        since=since_time,
        fmt=fmt,
        csv_raw_formulas=csv_raw_formulas,
    )
    stateful = keeps_state(path)
    if resume and not stateful:
        raise ValueError(f"resume=True needs a regular file, and {path} is a device or a pipe")
    with contextlib.ExitStack() as held:
        # Held from before the state is read until the end: two exports into one file would
        # interleave their jobs and their states.
        if stateful:
            held.enter_context(lock_output(path))
        state_path = state_path_for(path) if stateful else None
        resumed = _starting_state(path, params, resume=resume, overwrite=overwrite)
        state = ExportState(params=params) if resumed is None else resumed[0]
        with open_writer(path, fmt, resumed, raw_formulas=csv_raw_formulas) as writer:
            result = await export_jobs(
                sieve,
                refs,
                writer,
                concurrency=concurrency,
                status=checked_status,
                page_size=page_size,
                since=since_time,
                max_jobs=max_jobs,
                state=state,
                state_path=state_path,
                on_progress=on_progress,
            )
        finish_parquet(writer, state_path)
        return result


def _refs(functions: Iterable[str | tuple[str, str] | FunctionRef]) -> list[FunctionRef]:
    if isinstance(functions, str | FunctionRef):
        raise ValueError("functions must be a list of 'owner/function' names, not one name")
    refs = list(dict.fromkeys(FunctionRef.parse(spec) for spec in functions))
    if not refs:
        raise ValueError("functions must name at least one 'owner/function'")
    return refs


def _check_options(fmt: str, *, resume: bool, overwrite: bool, csv_raw_formulas: bool) -> None:
    if resume and overwrite:
        raise ValueError("pass resume=True or overwrite=True, not both")
    if csv_raw_formulas and fmt != "csv":
        raise ValueError(f"csv_raw_formulas applies to CSV output only, not {fmt}")


def _starting_state(
    path: Path, params: dict[str, Any], *, resume: bool, overwrite: bool
) -> Resumed | None:
    """What this export resumes from, checked; ``None`` for a fresh start."""
    if not keeps_state(path) or overwrite:
        return None
    if not resume:
        if unfinished(path):
            raise StateError(
                f"{path} holds an export that did not finish (its resume state is "
                f"{state_path_for(path)}): pass resume=True to continue it, or overwrite=True "
                "to start over"
            )
        return None
    try:
        return resume_state(path, params)
    except StateError as exc:
        raise StateError(f"{exc}; or pass overwrite=True to start over") from exc


#: The format of a suffix; no suffix (``/dev/null``, ``jobs``, stdout) means JSONL.
SUFFIXES: Final[dict[str, Format]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}


def output_format(format: str | None, path: Path | None, *, how_to_name: str) -> Format:
    """``format`` checked, or the format ``path``'s suffix names (stdout: JSONL).

    Raises:
        ValueError: an unknown format, or a suffix naming none we write (``out.xlsx``,
            ``out.jsonl.gz`` are not silently JSONL); ``how_to_name`` says how to pass one.
    """
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
        return format  # type: ignore[return-value]  # checked just above
    if path is None or not path.suffix:
        return "jsonl"
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {path} from its suffix {path.suffix!r} (known: "
            f"{', '.join(SUFFIXES)}); {how_to_name}"
        )
    return fmt


def keeps_state(path: Path | None) -> bool:
    """Whether an export to ``path`` keeps a resume state and a lock: only a regular file (or
    one still to be made) does; stdout, /dev/null, a terminal or a named pipe cannot be
    truncated back to a state, nor fsynced."""
    return path is not None and (not path.exists() or path.is_file())


def export_params(
    functions: Iterable[FunctionRef],
    *,
    all_functions: bool,
    status: str | None,
    since: datetime | None,
    fmt: str,
    csv_raw_formulas: bool,
    heads: Mapping[str, list[str | int]] | None = None,
) -> dict[str, Any]:
    """The arguments that decide what the output holds; a resume must repeat them.

    ``heads`` is the incremental state a run starts from: a resume started from another one (a
    run in between finished and moved it on) would leave a gap or repeat jobs.
    """
    params: dict[str, Any] = {
        "functions": sorted(str(ref) for ref in functions),
        "all_functions": all_functions,
        "status": status,
        "since": None if since is None else since.isoformat(),
        "format": fmt,
        "csv_raw_formulas": csv_raw_formulas,
    }
    if heads is not None:
        digest = hashlib.sha256(orjson.dumps(heads, option=orjson.OPT_SORT_KEYS)).hexdigest()
        params["incremental"] = digest
    return params


def unfinished(path: Path) -> bool:
    """``path`` holds the output of an export that did not finish: its resume state is there."""
    written = path.exists() or parts_dir_for(path).exists()
    return written and state_path_for(path).exists()


Resumed = tuple[ExportState, "hashlib._Hash"]


def resume_state(path: Path, params: dict[str, Any]) -> Resumed | None:
    """The state beside ``path`` and the checksum of the output it covers, both checked, or
    ``None`` when there is no state.

    Raises:
        StateError: the state is damaged, was written for other arguments, or the output
            changed since it was saved.
    """
    state = load_state(state_path_for(path))
    if state is None:
        return None
    if state.params != params:
        differ = sorted(k for k in {*params, *state.params} if params.get(k) != state.params.get(k))
        raise StateError(
            f"{state_path_for(path)} was written for other arguments (different "
            f"{', '.join(differ)}): repeat those of the interrupted export"
        )
    verify = verify_parquet_parts if params["format"] == "parquet" else verify_output
    return state, verify(path, state)


@contextmanager
def open_writer(
    path: Path | None, fmt: str, resume: Resumed | None, *, raw_formulas: bool = False
) -> Iterator[Writer]:
    """The writer of ``fmt`` into ``path`` (stdout if ``None``): after the bytes ``resume``'s
    state covers (its checksum carried on), else from the start."""
    writer: Writer
    stateful = keeps_state(path)
    length = 0 if resume is None else resume[0].length
    checksum = None if resume is None else resume[1]
    if path is None:
        writer = _stream_writer(
            fmt, sys.stdout.buffer, owned=False, durable=False, raw_formulas=raw_formulas
        )
    elif fmt == "parquet":
        # A Parquet file is readable only once finished: a resumable one is written as parts
        # committed with the state, and assembled at the end.
        writer = (
            ParquetPartsWriter(path, length=length, checksum=checksum)
            if stateful
            else ParquetWriter(path)
        )
    else:
        file: IO[bytes] = open(path, "r+b" if resume is not None else "wb")  # noqa: SIM115
        if resume is not None:
            # Bytes after the covered length were written after the last state: their jobs
            # are read again from the checkpoints.
            file.truncate(length)
            file.seek(length)
        writer = _stream_writer(
            fmt,
            file,
            length=length,
            owned=True,
            durable=stateful,
            checksum=checksum,
            raw_formulas=raw_formulas,
        )
    try:
        yield writer
    finally:
        writer.close()


def finish_parquet(writer: Writer, state_path: Path | None) -> None:
    """Assemble Parquet parts into the output, readable whole even after a failure; the parts
    stay while a state refers to them."""
    if isinstance(writer, ParquetPartsWriter):
        writer.assemble()
        if state_path is None or not state_path.exists():
            writer.remove_parts()


def _stream_writer(fmt: str, stream: IO[bytes], *, raw_formulas: bool, **options: Any) -> Writer:
    """The JSONL or CSV writer to ``stream``; ``options`` are `JsonlWriter`'s."""
    if fmt == "csv":
        return CsvWriter(stream, raw_formulas=raw_formulas, **options)
    return JsonlWriter(stream, **options)
