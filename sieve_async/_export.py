"""Export many job listings to one file: writers, the resume state file, and the export loop.

The loop reads the listings through the client's fan-out (`FanOut.pages`: at most
``concurrency`` requests in flight) and writes each page as it is handed over. Because one writer
receives each listing's pages in order, the fan-out's checkpoint of a listing taken after its page
is written is exactly "everything of this listing up to here is in the file". The state file records
those checkpoints together with the byte length of the output they cover, and is only ever
written after that many bytes are flushed and fsync-ed, and then replaced atomically. Resuming
truncates the output to the recorded length, so lines written after the last state are dropped
and fetched again, and every job ends up in the file exactly once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol

import attrs
import orjson

from ._client import SieveClient
from ._exceptions import SieveError
from ._fanout import FanOut
from ._models import FunctionRef, Job
from ._paginator import Checkpoint

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "FUNCTION_KEY",
    "CsvWriter",
    "ExportResult",
    "ExportState",
    "JsonlWriter",
    "ListingState",
    "ParquetWriter",
    "StateError",
    "Writer",
    "export",
    "load_state",
    "save_state",
    "state_path_for",
]

logger = logging.getLogger("sieve_async.export")

FORMATS: Final = ("jsonl", "csv", "parquet")

#: The key added to each exported job naming the function it came from (``owner/name``).
#: The API's own fields carry no leading underscore, so this cannot shadow one of them.
FUNCTION_KEY: Final = "_sieve_function"
#: Unknown fields of a job, as JSON text, in the CSV and Parquet formats.
EXTRA_KEY: Final = "_extra"
#: The ``Job`` fields of the Sieve OpenAPI document, in its order.
JOB_FIELDS: Final = (
    "id",
    "function_id",
    "organization_id",
    "function",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "inputs",
    "outputs",
    "error",
    "visibility",
    "run_id",
    "children",
    "restarts",
)
CSV_COLUMNS: Final = (FUNCTION_KEY, *JOB_FIELDS, EXTRA_KEY)
_KNOWN_FIELDS: Final = frozenset(JOB_FIELDS)
_TIMESTAMP_FIELDS: Final = ("created_at", "started_at", "completed_at")
STATE_VERSION: Final = 1


# -- writers ---------------------------------------------------------------------------------


class Writer(Protocol):
    """Where exported jobs go. ``write`` takes one page of one listing at a time."""

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        """Append ``jobs`` of listing ``ref``."""

    def sync(self) -> int:
        """Make everything written so far durable; return the output's length in bytes."""

    def close(self) -> None:
        """Flush and close (a stream the writer did not open stays open)."""


def _scalar_or_json(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def _text(values: Iterable[Any]) -> list[str | None]:
    # A scalar field the API sends as a number or a boolean still fits one string column.
    return [
        None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode() for v in values
    ]


def _flat_row(ref: FunctionRef, job: Job) -> list[Any]:
    raw = job.raw
    row: list[Any] = [str(ref)]
    row.extend(_scalar_or_json(raw.get(name)) for name in JOB_FIELDS)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_FIELDS}
    row.append(orjson.dumps(extra).decode() if extra else None)
    return row


class _StreamWriter:
    """Bytes to a binary stream, counting the length so a state can name what it covers."""

    def __init__(self, stream: IO[bytes], *, length: int = 0, owned: bool, durable: bool) -> None:
        self._stream = stream
        self.length = length
        self._owned = owned
        self._durable = durable

    def _emit(self, data: bytes) -> None:
        self._stream.write(data)
        self.length += len(data)

    def sync(self) -> int:
        self._stream.flush()
        if self._durable:
            os.fsync(self._stream.fileno())
        return self.length

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()


class JsonlWriter(_StreamWriter):
    """One line per job: the server's object unchanged, plus ``FUNCTION_KEY``.

    Args:
        stream: a binary stream positioned at ``length``.
        length: bytes already in the output before this writer (when resuming).
        owned: close ``stream`` in `close`.
        durable: fsync in `sync` (for files; not for a pipe).
    """

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        name = str(ref)
        option = orjson.OPT_APPEND_NEWLINE
        self._emit(
            b"".join(orjson.dumps({**job.raw, FUNCTION_KEY: name}, option=option) for job in jobs)
        )


class CsvWriter(_StreamWriter):
    """One row per job: ``CSV_COLUMNS``, nested values as JSON text, unknown fields in ``_extra``.

    Writes the header when the output is empty; takes the arguments of `JsonlWriter`.
    """

    def __init__(self, stream: IO[bytes], *, length: int = 0, owned: bool, durable: bool) -> None:
        super().__init__(stream, length=length, owned=owned, durable=durable)
        if length == 0:
            self._emit(self._render([list(CSV_COLUMNS)]))

    @staticmethod
    def _render(rows: Iterable[list[Any]]) -> bytes:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        return text.getvalue().encode()

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        self._emit(self._render(_flat_row(ref, job) for job in jobs))


class ParquetWriter:
    """Parquet through pyarrow: the CSV columns, with the timestamps as UTC timestamps.

    Rows are buffered and written as row groups of ``row_group_size``; the file is only
    readable once `close` has run.

    Raises:
        ImportError: pyarrow is not installed (the ``parquet`` extra).
    """

    def __init__(self, path: Path, *, row_group_size: int = 50_000) -> None:
        import pyarrow as pa  # noqa: PLC0415 - an optional extra, imported only when asked for
        import pyarrow.parquet as pq  # noqa: PLC0415 - same

        self._pa = pa
        fields = []
        for name in CSV_COLUMNS:
            kind = pa.timestamp("us", tz="UTC") if name in _TIMESTAMP_FIELDS else pa.string()
            fields.append(pa.field(name, kind))
        self._schema = pa.schema(fields)
        self._file = pq.ParquetWriter(str(path), self._schema)
        self._rows: list[list[Any]] = []
        self._row_group_size = row_group_size
        self._timestamp_columns = [CSV_COLUMNS.index(name) for name in _TIMESTAMP_FIELDS]

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        for job in jobs:
            row = _flat_row(ref, job)
            for index in self._timestamp_columns:
                row[index] = getattr(job, CSV_COLUMNS[index])
            self._rows.append(row)
        if len(self._rows) >= self._row_group_size:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        pa = self._pa
        columns = zip(*self._rows, strict=True)
        arrays = [
            pa.array(values if field.name in _TIMESTAMP_FIELDS else _text(values), type=field.type)
            for values, field in zip(columns, self._schema, strict=True)
        ]
        self._file.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._rows = []

    def sync(self) -> int:
        self._flush_rows()
        return 0

    def close(self) -> None:
        self._flush_rows()
        self._file.close()


# -- the state file --------------------------------------------------------------------------


class StateError(Exception):
    """A resume state that cannot be used: unreadable, or written for other arguments."""


@attrs.define
class ListingState:
    """How far one listing got: its paginator checkpoint and whether it is finished."""

    checkpoint: dict[str, Any] | None = None
    done: bool = False
    #: The listing was found not to be newest-first, so ``since`` filters instead of stopping.
    unordered: bool = False


@attrs.define
class ExportState:
    """What a resumed export needs: the arguments, per-listing progress, the covered length.

    Attributes:
        params: the arguments that decide the output's content; a resume must repeat them.
        listings: ``owner/name`` mapped to its `ListingState`, in export order.
        length: bytes of the output that the checkpoints cover.
        jobs: jobs in those bytes.
    """

    params: dict[str, Any]
    listings: dict[str, ListingState] = attrs.field(factory=dict)
    length: int = 0
    jobs: int = 0

    def to_json(self) -> bytes:
        """The state as JSON."""
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "params": self.params,
                "length": self.length,
                "jobs": self.jobs,
                "listings": {name: attrs.asdict(ls) for name, ls in self.listings.items()},
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> ExportState:
        """Read `to_json` output.

        Raises:
            StateError: it is not a state this version wrote.
        """
        try:
            doc = orjson.loads(data)
            if doc["version"] != STATE_VERSION:
                raise StateError(f"unsupported state version {doc['version']!r}")
            listings = {
                str(name): ListingState(
                    checkpoint=ls["checkpoint"],
                    done=bool(ls["done"]),
                    unordered=bool(ls["unordered"]),
                )
                for name, ls in doc["listings"].items()
            }
            return cls(
                params=dict(doc["params"]),
                listings=listings,
                length=int(doc["length"]),
                jobs=int(doc["jobs"]),
            )
        except StateError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"the resume state is damaged ({type(exc).__name__}: {exc})") from exc


def state_path_for(output: Path) -> Path:
    """Where the resume state of ``output`` lives: beside it, ``<name>.state.json``."""
    return output.with_name(output.name + ".state.json")


def save_state(path: Path, state: ExportState) -> None:
    """Replace the state file atomically: write a temporary file, fsync it, rename it over."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        file.write(state.to_json())
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def load_state(path: Path) -> ExportState | None:
    """The state at ``path``, or ``None`` if there is none.

    Raises:
        StateError: the file exists but cannot be used.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return ExportState.from_json(data)


def _fsync_directory(directory: Path) -> None:
    # The rename itself only survives a power cut once the directory entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- the loop --------------------------------------------------------------------------------


@attrs.define
class ExportResult:
    """What an export did. Live while it runs (the progress callback receives it).

    Attributes:
        jobs: jobs written by this run.
        total_jobs: jobs in the output, counting those of the run this one resumed.
        pages: pages written by this run.
        listings: listings this export covers (including ones a resumed run had finished).
        pending: listings neither finished nor failed yet.
        completed: listings that were read to their end (or to ``since``) by this run.
        failures: ``(ref, error)`` of each listing that failed; the others were exported.
        truncated: the export stopped at ``max_jobs``.
        elapsed: seconds this run took.
    """

    jobs: int = 0
    total_jobs: int = 0
    pages: int = 0
    listings: int = 0
    completed: list[FunctionRef] = attrs.field(factory=list)
    failures: list[tuple[FunctionRef, SieveError]] = attrs.field(factory=list)
    pending: int = 0
    truncated: bool = False
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        """Listings finished, by this run or the one it resumed."""
        return self.listings - self.pending - len(self.failures)


def _since_window(
    jobs: Sequence[Job], since: datetime, previous: datetime | None, unordered: bool
) -> tuple[list[Job], bool, bool, datetime | None]:
    """Apply ``since`` to one page: (jobs to keep, stop the listing, unordered, newest seen last).

    A newest-first listing stops at its first job older than ``since``. Once any job is newer than
    the one before it, the order cannot be trusted, and every later page is filtered instead.
    """
    keep: list[Job] = []
    old = False
    for job in jobs:
        created = job.created_at
        if created is None:
            keep.append(job)
            continue
        if previous is not None and created > previous:
            unordered = True
        previous = created
        if created >= since:
            keep.append(job)
        else:
            old = True
    return keep, old and not unordered, unordered, previous


async def export(
    sieve: SieveClient,
    refs: Sequence[FunctionRef],
    writer: Writer,
    *,
    concurrency: int = 8,
    status: str | None = None,
    page_size: int | None = None,
    since: datetime | None = None,
    max_jobs: int | None = None,
    state: ExportState | None = None,
    state_path: Path | None = None,
    save_every: float = 0.5,
    on_progress: Callable[[ExportResult], None] | None = None,
) -> ExportResult:
    """Export the jobs of ``refs`` through ``writer``; failed listings do not stop the others.

    Args:
        sieve: the client to read with.
        refs: the functions whose jobs to export.
        writer: where the jobs go (`JsonlWriter`, `CsvWriter`, `ParquetWriter`, or your own).
        concurrency: listings read at once, each with one request in flight.
        status: only jobs in this status.
        page_size: the ``limit`` to ask for.
        since: only jobs created at or after this time (timezone-aware).
        max_jobs: stop once the output holds this many jobs.
        state: the progress of an interrupted export to continue (finished listings are
            skipped, the others resume from their checkpoints); it is updated as jobs are written.
        state_path: where to keep ``state`` while running; removed once the export completes
            with no failure, kept otherwise (also when cancelled) for a later resume.
        save_every: seconds between two saves of the state.
        on_progress: called with the live `ExportResult` after each page.

    Returns:
        What was exported, and which listings failed.
    """
    started = time.monotonic()
    if state is None:
        state = ExportState(params={})
    for ref in refs:
        state.listings.setdefault(str(ref), ListingState())
    by_name = {str(ref): ref for ref in refs}
    for name in state.listings:
        by_name.setdefault(name, FunctionRef.parse(name))
    todo = [by_name[name] for name, ls in state.listings.items() if not ls.done]
    result = ExportResult(total_jobs=state.jobs, listings=len(state.listings), pending=len(todo))
    resume = {
        str(ref): checkpoint
        for ref in todo
        if (checkpoint := state.listings[str(ref)].checkpoint) is not None
    }
    # No read-ahead in the fan-out: at most `concurrency` requests in flight.
    jobs_by_page = sieve.list_jobs_for_functions(
        todo,
        concurrency=concurrency,
        status=status,
        page_size=page_size,
        on_error="continue",
        resume=resume,
    )
    newest_seen: dict[FunctionRef, datetime | None] = {}
    last_save = time.monotonic()

    if state_path is not None:
        # At once, so that a state left by an earlier run never describes this run's output.
        _persist(writer, state, state_path)
    try:
        async with jobs_by_page:
            async for ref, page in jobs_by_page.pages():
                listing = state.listings[str(ref)]
                jobs: Sequence[Job] = page
                stop = False
                if since is not None:
                    was_unordered = listing.unordered
                    jobs, stop, listing.unordered, newest_seen[ref] = _since_window(
                        jobs, since, newest_seen.get(ref), listing.unordered
                    )
                    if listing.unordered and not was_unordered:
                        logger.warning(
                            "%s: jobs are not newest-first; reading the whole listing to apply "
                            "--since",
                            ref,
                        )
                if max_jobs is not None and state.jobs + len(jobs) >= max_jobs:
                    jobs = jobs[: max(0, max_jobs - state.jobs)]
                    result.truncated = True
                if jobs:
                    writer.write(ref, jobs)
                    state.jobs += len(jobs)
                    result.jobs += len(jobs)
                    result.total_jobs = state.jobs
                    result.pages += 1
                if result.truncated:
                    break
                if stop:
                    jobs_by_page.stop(ref)
                # Only now, with the page written, may the state say this listing got past it.
                _record(listing, jobs_by_page.checkpoint_of(ref))
                _tally(result, jobs_by_page, len(todo))
                if state_path is not None and time.monotonic() - last_save >= save_every:
                    _persist(writer, state, state_path)
                    last_save = time.monotonic()
                if on_progress is not None:
                    on_progress(result)
        _tally(result, jobs_by_page, len(todo))
        result.completed = [ref for ref in todo if ref in jobs_by_page.done]
        if on_progress is not None:
            on_progress(result)
    finally:
        # A listing seen to its end had every page written before its end was seen.
        for ref in jobs_by_page.done:
            state.listings[str(ref)].done = True
        result.elapsed = time.monotonic() - started
        _finish(result, writer, state, state_path)
    return result


def _record(listing: ListingState, checkpoint: Checkpoint | Literal["done"] | None) -> None:
    """Note in ``listing`` how far its jobs are in the output."""
    if checkpoint == "done":
        listing.done = True
    elif checkpoint is not None:
        listing.checkpoint = checkpoint


def _tally(result: ExportResult, jobs_by_page: FanOut, listings: int) -> None:
    """Bring the listing counts of ``result`` up to date; runs after every page, so it only
    counts (the list of completed listings is made once, at the end)."""
    finished = jobs_by_page.done
    result.failures = list(jobs_by_page.failures)
    failed = sum(1 for ref, _ in result.failures if ref not in finished)
    result.pending = listings - len(finished) - failed


# Writing and saving are blocking on purpose: no await may split a page from the state that
# covers it, so that a cancellation (Ctrl-C) always leaves whole pages and a matching state.


def _persist(writer: Writer, state: ExportState, state_path: Path | None) -> None:
    """Make the output durable, then record the state that covers it."""
    state.length = writer.sync()
    if state_path is not None:
        save_state(state_path, state)


def _finish(
    result: ExportResult, writer: Writer, state: ExportState, state_path: Path | None
) -> None:
    """Drop the state of a complete export; keep one covering everything written otherwise."""
    if result.truncated or (result.pending == 0 and not result.failures):
        writer.sync()
        if state_path is not None:
            state_path.unlink(missing_ok=True)
    else:
        _persist(writer, state, state_path)
