"""Export many job listings to one file: writers, the resume state file, and the export loop.

The loop reads the listings through the client's fan-out (`FanOut.pages`: at most
``concurrency`` requests in flight) and writes each page as it is handed over. Because one writer
receives each listing's pages in order, the fan-out's checkpoint of a listing taken after its page
is written is exactly "everything of this listing up to here is in the file". The state file records
those checkpoints together with the byte length of the output they cover, and is only ever
written after that many bytes are flushed and fsync-ed, and then replaced atomically. Resuming
truncates the output to the recorded length, so lines written after the last state are dropped
and fetched again, and every job ends up in the file exactly once.

The state also records the sha256 of those bytes, kept up to date as they are written, so a
resume can tell the covered part is still what the export wrote before it builds on it. One
export at a time may write an output: `lock_output` holds an exclusive lock beside it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol, Required, TypedDict, Unpack, cast

import attrs
import orjson

from ._checkpoint import Checkpoint, parse_checkpoint
from ._client import SieveClient
from ._exceptions import SieveDecodeError, SieveError
from ._fanout import FanOut
from ._models import FunctionRef, Job

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "FUNCTION_KEY",
    "CsvWriter",
    "ExportResult",
    "ExportState",
    "JsonlWriter",
    "ListingState",
    "OutputLockedError",
    "ParquetWriter",
    "StateError",
    "Writer",
    "export",
    "load_state",
    "lock_output",
    "save_state",
    "state_path_for",
    "verify_output",
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
STATE_VERSION: Final = 2
#: What a spreadsheet may read as the start of a formula (OWASP, "CSV Injection").
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


# -- writers ---------------------------------------------------------------------------------


class Writer(Protocol):
    """Where exported jobs go. ``write`` takes one page of one listing at a time."""

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        """Append ``jobs`` of listing ``ref``."""

    def sync(self) -> int:
        """Make everything written so far durable; return the output's length in bytes."""

    def checksum(self) -> str | None:
        """The sha256 (hex) of the output's bytes so far, or ``None`` if this writer cannot tell."""

    def close(self) -> None:
        """Flush and close (a stream the writer did not open stays open)."""


def _json(value: Any, option: int | None = None) -> bytes:
    """``value`` as JSON text, exactly as the server sent it."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        # What orjson cannot write, an integer beyond 64 bits or a lone surrogate (both read by
        # the standard library's slow path of `decode_page`), the standard library writes; its
        # ASCII escapes keep a lone surrogate valid JSON.
        text = json.dumps(value, separators=(",", ":"))
        return (text + "\n" if option == orjson.OPT_APPEND_NEWLINE else text).encode()


def _scalar_or_json(value: Any) -> Any:
    if isinstance(value, dict | list):
        return _json(value).decode()
    return value


def _text(values: Iterable[Any]) -> list[str | None]:
    # A scalar field the API sends as a number or a boolean still fits one string column.
    return [None if v is None else v if isinstance(v, str) else _json(v).decode() for v in values]


def _flat_row(ref: FunctionRef, job: Job) -> list[Any]:
    raw = job.raw
    row: list[Any] = [str(ref)]
    row.extend(_scalar_or_json(raw.get(name)) for name in JOB_FIELDS)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_FIELDS}
    row.append(_json(extra).decode() if extra else None)
    return row


class _StreamOptions(TypedDict, total=False):
    """The keyword arguments of `_StreamWriter`, which its subclasses pass on."""

    length: int
    owned: Required[bool]
    durable: Required[bool]
    checksum: hashlib._Hash | None


class _StreamWriter:
    """Bytes to a binary stream, counting and hashing them so a state can name what it covers."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        length: int = 0,
        owned: bool,
        durable: bool,
        checksum: hashlib._Hash | None = None,
    ) -> None:
        self._stream = stream
        self.length = length
        self._owned = owned
        self._durable = durable
        # Hashing as the bytes go out keeps a long export linear: no state save re-reads the file.
        if checksum is None and length == 0:
            checksum = hashlib.sha256()
        self._hash = checksum

    def _emit(self, data: bytes) -> None:
        self._stream.write(data)
        self.length += len(data)
        if self._hash is not None:
            self._hash.update(data)

    def sync(self) -> int:
        self._stream.flush()
        if self._durable:
            os.fsync(self._stream.fileno())
        return self.length

    def checksum(self) -> str | None:
        return None if self._hash is None else self._hash.hexdigest()

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
        checksum: the sha256 of those ``length`` bytes, as `verify_output` returns it; without
            it a resumed writer's `checksum` is ``None``.
    """

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        name = str(ref)
        option = orjson.OPT_APPEND_NEWLINE
        self._emit(b"".join(_json({**job.raw, FUNCTION_KEY: name}, option) for job in jobs))


class CsvWriter(_StreamWriter):
    """One row per job: ``CSV_COLUMNS``, nested values as JSON text, unknown fields in ``_extra``.

    Writes the header when the output is empty. A text cell a spreadsheet would run as a formula
    (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) gets a leading ``'``
    unless ``raw_formulas`` is true. Takes the other arguments of `JsonlWriter`.
    """

    def __init__(
        self, stream: IO[bytes], *, raw_formulas: bool = False, **options: Unpack[_StreamOptions]
    ) -> None:
        super().__init__(stream, **options)
        self._raw_formulas = raw_formulas
        if self.length == 0:
            self._emit(self._render([list(CSV_COLUMNS)]))

    @staticmethod
    def _render(rows: Iterable[list[Any]]) -> bytes:
        text = io.StringIO()
        # The csv module quotes a cell only for the characters of the line terminator: with
        # RFC 4180's CRLF, a lone carriage return inside a cell is quoted too, not a row break.
        csv.writer(text, lineterminator="\r\n").writerows(rows)
        return text.getvalue().encode()

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        rows = (_flat_row(ref, job) for job in jobs)
        if not self._raw_formulas:
            rows = ([_defuse(cell) for cell in row] for row in rows)
        self._emit(self._render(rows))


def _defuse(cell: Any) -> Any:
    # Nested values are JSON text starting with { or [, so only the server's strings can match.
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


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
                try:
                    row[index] = getattr(job, CSV_COLUMNS[index])
                except SieveDecodeError as exc:
                    # One unreadable timestamp leaves its cell empty, not the page unwritten.
                    logger.warning("%s: %s; the cell is left empty", ref, exc)
                    row[index] = None
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

    def checksum(self) -> str | None:
        return None

    def close(self) -> None:
        self._flush_rows()
        self._file.close()


# -- the state file --------------------------------------------------------------------------


class StateError(Exception):
    """A resume state that cannot be used: unreadable, written for other arguments, or for an
    output that has changed since."""


class OutputLockedError(Exception):
    """Another export is writing this output.

    Attributes:
        path: the output.
        pid: the process holding the lock, if it has recorded itself yet.
    """

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = "another process" if pid is None else f"process {pid}"
        super().__init__(
            f"{path} is being written by {holder} (lock {lock_path_for(path)}); wait for it to "
            "finish or write elsewhere"
        )
        self.path = path
        self.pid = pid


@attrs.define
class ListingState:
    """How far one listing got: its paginator checkpoint and whether it is finished."""

    checkpoint: Checkpoint | None = None
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
        sha256: the sha256 (hex) of those bytes, or ``None`` if the writer could not tell.
    """

    params: dict[str, Any]
    listings: dict[str, ListingState] = attrs.field(factory=dict)
    length: int = 0
    jobs: int = 0
    sha256: str | None = None

    def to_json(self) -> bytes:
        """The state as JSON."""
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "params": self.params,
                "length": self.length,
                "sha256": self.sha256,
                "jobs": self.jobs,
                "listings": {name: attrs.asdict(ls) for name, ls in self.listings.items()},
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> ExportState:
        """Read `to_json` output, checking the type of every value.

        Raises:
            StateError: it is not a state this version wrote, or a value has the wrong type.
        """
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StateError(f"the resume state is damaged: not JSON ({exc})") from exc
        doc = _field(doc, "the state", dict, "an object")
        if _field(doc.get("version"), "version", int, "a number") != STATE_VERSION:
            raise StateError(f"unsupported state version {doc['version']!r}")
        sha256 = _field(doc.get("sha256", ...), "sha256", str | None, "hex text or null")
        if sha256 is not None and not _SHA256_HEX.fullmatch(sha256):
            raise StateError(
                f"the resume state is damaged: sha256 is not a sha256 digest, {sha256!r}"
            )
        listings = {}
        for name, entry in _field(doc.get("listings"), "listings", dict, "an object").items():
            where = f"listings[{name!r}]"
            try:
                FunctionRef.parse(name)
            except ValueError as exc:
                raise StateError(f"the resume state is damaged: {where}: {exc}") from exc
            value = _field(entry, where, dict, "an object")
            checkpoint = _field(
                value.get("checkpoint", ...),
                f"{where}.checkpoint",
                dict | None,
                "an object or null",
            )
            if checkpoint is not None:
                listing = _field(
                    checkpoint.get("listing"), f"{where}.checkpoint.listing", str, "text"
                )
                try:
                    parse_checkpoint(checkpoint, listing)
                except ValueError as exc:
                    raise StateError(f"the resume state is damaged: {where}: {exc}") from exc
            listings[name] = ListingState(
                checkpoint=cast(Checkpoint | None, checkpoint),  # checked just above
                done=_field(value.get("done"), f"{where}.done", bool, "true or false"),
                unordered=_field(
                    value.get("unordered"), f"{where}.unordered", bool, "true or false"
                ),
            )
        return cls(
            params=_field(doc.get("params"), "params", dict, "an object"),
            listings=listings,
            length=_count(doc.get("length"), "length"),
            jobs=_count(doc.get("jobs"), "jobs"),
            sha256=sha256,
        )


def _field(value: Any, name: str, kind: Any, expected: str) -> Any:
    """``value`` if it is a ``kind``; a missing key arrives as ``None`` (or ``...`` where
    ``None`` is allowed)."""
    if value is ... or (value is None and not isinstance(None, kind)):
        raise StateError(f"the resume state is damaged: {name} is missing")
    if not isinstance(value, kind):
        raise StateError(f"the resume state is damaged: {name} should be {expected}, not {value!r}")
    return value


def _count(value: Any, name: str) -> int:
    # bool is an int to isinstance; a count of True is still damage.
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise StateError(f"the resume state is damaged: {name} should be a count, not {value!r}")
    return int(_field(value, name, int, "a count"))


def state_path_for(output: Path) -> Path:
    """Where the resume state of ``output`` lives: beside it, ``<name>.state.json``."""
    return output.with_name(output.name + ".state.json")


def lock_path_for(output: Path) -> Path:
    """The lock file of ``output``: beside it, ``<name>.lock``."""
    return output.with_name(output.name + ".lock")


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
        StateError: the file exists but cannot be used; the message names it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return ExportState.from_json(data)
    except StateError as exc:
        raise StateError(f"{path}: {exc}") from exc


def verify_output(path: Path, state: ExportState) -> hashlib._Hash:
    """Check that the first ``state.length`` bytes of ``path`` are the ones the export wrote.

    Reads those bytes once. Bytes after them are not checked: a resume drops them.

    Returns:
        The sha256 of those bytes, to pass on as a resumed writer's ``checksum``.

    Raises:
        StateError: the output is missing, shorter than the state says, or its covered bytes
            differ (it was edited, or another program wrote to it), or the state has no checksum.
    """
    if state.sha256 is None:
        raise StateError(f"the resume state of {path} records no checksum to verify it with")
    checksum = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            left = state.length
            while left > 0:
                chunk = file.read(min(left, 1 << 20))
                if not chunk:
                    break
                checksum.update(chunk)
                left -= len(chunk)
    except FileNotFoundError:
        raise StateError(f"{path} is missing") from None
    if left > 0:
        raise StateError(
            f"{path} is shorter than its resume state says "
            f"({state.length - left} < {state.length} bytes)"
        )
    if checksum.hexdigest() != state.sha256:
        raise StateError(
            f"{path} was changed after the export wrote it: its first {state.length} bytes are "
            "not the ones its resume state covers"
        )
    return checksum


@contextlib.contextmanager
def lock_output(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (and its resume state) for the ``with`` block.

    The lock is ``flock`` on ``<name>.lock`` beside it, which records the holder's PID and is
    removed on release; the kernel drops the lock if the holder dies, so a stale file blocks
    nobody.

    Raises:
        OutputLockedError: another process (or another ``with`` in this one) holds it.
    """
    lock = lock_path_for(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise OutputLockedError(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder removes the file on release; if it did so after we opened it,
        # we hold a lock nobody else can see. Then take the file now at the path.
        try:
            opened, current = os.fstat(fd), os.stat(lock)
            if (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        # Removed while still held, so that no one can lock a file about to disappear.
        lock.unlink(missing_ok=True)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


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
    A job whose ``created_at`` cannot be read (year 0, say) is kept, with a warning: it is
    neither compared nor allowed to cost the page its other jobs.
    """
    keep: list[Job] = []
    old = False
    for job in jobs:
        try:
            created = job.created_at
        except SieveDecodeError as exc:
            logger.warning("written without comparing it with since: %s", exc)
            keep.append(job)
            continue
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
    todo = _todo(state, refs)
    result = ExportResult(total_jobs=state.jobs, listings=len(state.listings), pending=len(todo))
    jobs_by_page = _fan_out(
        sieve, todo, state, state_path, concurrency=concurrency, status=status, page_size=page_size
    )
    window = _Window(since, max_jobs)
    last_save = time.monotonic()

    if state_path is not None:
        # At once, so that a state left by an earlier run never describes this run's output.
        _persist(writer, state, state_path)
    try:
        async with jobs_by_page:
            async for ref, page in jobs_by_page.pages():
                listing = state.listings[str(ref)]
                jobs, stop = window.select(ref, listing, page, state.jobs)
                result.truncated = window.truncated
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


def _todo(state: ExportState, refs: Sequence[FunctionRef]) -> list[FunctionRef]:
    """Add ``refs`` to ``state``; return its listings not finished yet, in export order."""
    for ref in refs:
        state.listings.setdefault(str(ref), ListingState())
    by_name = {str(ref): ref for ref in refs}
    for name in state.listings:
        by_name.setdefault(name, FunctionRef.parse(name))
    return [by_name[name] for name, listing in state.listings.items() if not listing.done]


def _fan_out(
    sieve: SieveClient,
    todo: list[FunctionRef],
    state: ExportState,
    state_path: Path | None,
    *,
    concurrency: int,
    status: str | None,
    page_size: int | None,
) -> FanOut:
    """The fan-out over ``todo``, each listing resumed from its checkpoint in ``state``."""
    resume = {
        str(ref): checkpoint
        for ref in todo
        if (checkpoint := state.listings[str(ref)].checkpoint) is not None
    }
    # No read-ahead in the fan-out: at most `concurrency` requests in flight.
    try:
        return sieve.list_jobs_for_functions(
            todo,
            concurrency=concurrency,
            status=status,
            page_size=page_size,
            on_error="continue",
            resume=resume,
        )
    except ValueError as exc:
        if not resume:
            raise
        # The checkpoints passed their own checks on loading, so this one names another
        # listing (or status) than the one it is resumed for.
        where = "the resume state" if state_path is None else str(state_path)
        raise StateError(f"{where} does not fit this export: {exc}") from exc


class _Window:
    """Which jobs of a page go out: those created since ``since``, up to ``max_jobs`` in all."""

    def __init__(self, since: datetime | None, max_jobs: int | None) -> None:
        self.since = since
        self.max_jobs = max_jobs
        #: The output reached ``max_jobs``.
        self.truncated = False
        self._newest_seen: dict[FunctionRef, datetime | None] = {}

    def select(
        self, ref: FunctionRef, listing: ListingState, page: Sequence[Job], written: int
    ) -> tuple[Sequence[Job], bool]:
        """The jobs of ``page`` to write, and whether ``ref``'s listing can stop after it."""
        jobs, stop = page, False
        since = self.since
        if since is not None:
            was_unordered = listing.unordered
            jobs, stop, listing.unordered, self._newest_seen[ref] = _since_window(
                jobs, since, self._newest_seen.get(ref), listing.unordered
            )
            if listing.unordered and not was_unordered:
                logger.warning(
                    "%s: jobs are not newest-first; reading the whole listing to apply --since",
                    ref,
                )
        if self.max_jobs is not None and written + len(jobs) >= self.max_jobs:
            jobs = jobs[: max(0, self.max_jobs - written)]
            self.truncated = True
        return jobs, stop


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
    state.sha256 = writer.checksum()
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
