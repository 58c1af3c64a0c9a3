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
import logging
import os
import re
import stat
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol, Required, Self, TypedDict, Unpack, cast

import attrs
import orjson

from ._checkpoint import Checkpoint, parse_checkpoint
from ._client import SieveClient
from ._columns import (
    CSV_COLUMNS,
    FUNCTION_KEY,
    TIMESTAMP_FIELDS,
    ArrowRows,
    flat_row,
    json_text,
    utc_text,
)
from ._exceptions import SieveDecodeError, SieveError
from ._fanout import FanOut
from ._models import FunctionRef, Job, Page
from ._paginator import AsyncPaginator
from ._paging import is_id
from ._window import CreatedWindow, select

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
    "ParquetPartsWriter",
    "ParquetWriter",
    "StateError",
    "Writer",
    "advance_heads",
    "export",
    "load_heads",
    "load_state",
    "lock_output",
    "parts_dir_for",
    "save_heads",
    "save_state",
    "state_path_for",
    "verify_output",
    "verify_parquet_parts",
]

logger = logging.getLogger("sieve_async.export")

FORMATS: Final = ("jsonl", "csv", "parquet")

STATE_VERSION: Final = 2
#: What a spreadsheet may read as the start of a formula (OWASP, "CSV Injection").
_FORMULA_STARTS: Final = frozenset(("=", "+", "-", "@", "\t", "\r"))
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
#: Ids of a listing's first jobs a state keeps (`ListingState.head`): enough that an incremental
#: export still finds where the last one started when a few of them have left the listing.
HEAD_IDS: Final = 8
#: Rows of a Parquet row group: pyarrow's writer holds a few times a group's Arrow size while
#: it encodes one (about 600 bytes a job in Arrow), so this bounds an export's memory.
ROW_GROUP_SIZE: Final = 10_000


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
        # fsync of a character device (/dev/null) or a pipe fails with EINVAL: nothing to keep.
        self._durable = durable and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
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
    """One line per job: the server's object, plus ``FUNCTION_KEY``, with its timestamps as
    UTC text (`utc_text`).

    Args:
        stream: a binary stream positioned at ``length``.
        length: bytes already in the output before this writer (when resuming).
        owned: close ``stream`` in `close`.
        durable: fsync in `sync` (for files; never done for a device or a pipe).
        checksum: the sha256 of those ``length`` bytes, as `verify_output` returns it; without
            it a resumed writer's `checksum` is ``None``.
    """

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        name = str(ref)
        option = orjson.OPT_APPEND_NEWLINE
        lines = []
        for job in jobs:
            raw = job.raw
            line = {**raw, FUNCTION_KEY: name}
            for key in TIMESTAMP_FIELDS:
                value = raw.get(key)
                if value is not None:
                    line[key] = utc_text(value)
            lines.append(json_text(line, option))
        self._emit(b"".join(lines))


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
        function = str(ref)
        rows = [flat_row(function, job) for job in jobs]
        if not self._raw_formulas:
            # Nested values are JSON text starting with { or [: only the server's strings match.
            starts = _FORMULA_STARTS
            rows = [
                [
                    "'" + cell if cell.__class__ is str and cell[:1] in starts else cell
                    for cell in row
                ]
                for row in rows
            ]
        self._emit(self._render(rows))


class ParquetWriter:
    """Parquet through pyarrow: the CSV columns, typed as `arrow_schema` says.

    Rows are buffered as Arrow record batches and written as row groups of about
    ``row_group_size``; the file is only readable once `close` has run.

    Raises:
        ImportError: pyarrow is not installed (the ``parquet`` extra).
    """

    def __init__(self, path: Path, *, row_group_size: int = ROW_GROUP_SIZE) -> None:
        self._setup(row_group_size)
        self._file = self._pq.ParquetWriter(
            str(path), self._schema, memory_pool=self._rows.memory_pool
        )

    def _setup(self, row_group_size: int) -> None:
        self._rows = ArrowRows()
        import pyarrow as pa  # noqa: PLC0415 - an optional extra, imported only when asked for
        import pyarrow.parquet as pq  # noqa: PLC0415 - same

        self._pa = pa
        self._pq = pq
        self._schema = self._rows.schema
        self._row_group_size = row_group_size

    def write(self, ref: FunctionRef, jobs: Sequence[Job]) -> None:
        self._rows.add(str(ref), jobs)
        if len(self._rows) >= self._row_group_size:
            self._flush_rows()

    def _take_table(self) -> Any:
        """The buffered rows as a table (``None`` if there are none), and the buffer empty."""
        return self._rows.take() if len(self._rows) else None

    def _flush_rows(self) -> None:
        table = self._take_table()
        if table is not None:
            self._file.write_table(table, row_group_size=table.num_rows)

    def sync(self) -> int:
        self._flush_rows()
        return 0

    def checksum(self) -> str | None:
        return None

    def close(self) -> None:
        self._flush_rows()
        self._file.close()


def parts_dir_for(output: Path) -> Path:
    """Where a resumable Parquet export keeps its parts: beside the output, ``<name>.parts``."""
    return output.with_name(output.name + ".parts")


def _part_name(index: int) -> str:
    return f"part-{index:06d}.arrow"


#: The output as it is written, inside the parts folder until `ParquetPartsWriter.assemble`.
_ASSEMBLING: Final = "assembling.parquet"


class ParquetPartsWriter(ParquetWriter):
    """Parquet that can resume: the rows of each `sync` kept as a part, the output written as
    they come.

    A Parquet file is readable only once its footer is written, so a file being written cannot
    be continued after a crash. This writer keeps the rows buffered since the last `sync` as a
    part of their own (Arrow IPC, ``part-000000.arrow``, ... in `parts_dir_for` the output),
    fsync-ed before `sync` returns, so a state saved after it covers whole parts: its length is
    the parts' total size, its sha256 that of their bytes in order (`verify_parquet_parts`).
    The same rows go on into the Parquet output, in row groups of ``row_group_size``, written
    inside the parts folder; `assemble` finishes it and moves it into place. A resumed writer
    starts the output again from the parts the state covers.

    Args:
        path: the output file `assemble` writes.
        length: bytes of the parts a resumed state covers (parts after those are removed);
            0 starts afresh, removing any parts there are.
        checksum: their sha256, as `verify_parquet_parts` returns it.
        row_group_size: rows of a row group of the output, and at most of a part.
    """

    def __init__(
        self,
        path: Path,
        *,
        length: int = 0,
        checksum: hashlib._Hash | None = None,
        row_group_size: int = ROW_GROUP_SIZE,
    ) -> None:
        self._setup(row_group_size)
        self._path = path
        self._dir = parts_dir_for(path)
        self._dir.mkdir(exist_ok=True)
        self.length = 0
        self._next = 0
        # The parts the state covers stay; any after them were written after it was saved.
        while self.length < length:
            self.length += (self._dir / _part_name(self._next)).stat().st_size
            self._next += 1
        for part in self._dir.glob("part-*"):
            if part.name >= _part_name(self._next):
                part.unlink()
        self._hash = hashlib.sha256() if checksum is None else checksum
        self._group: list[Any] = []
        self._group_rows = 0
        self._output = self._dir / _ASSEMBLING
        self._file = self._pq.ParquetWriter(
            str(self._output), self._schema, memory_pool=self._rows.memory_pool
        )
        self._open = True
        for index in range(self._next):
            with self._pa.ipc.open_stream(self._dir / _part_name(index)) as part:
                self._to_output(part.read_all())

    def _to_output(self, table: Any) -> None:
        """Add ``table`` to the output, writing a row group once one is full."""
        self._group.append(table)
        self._group_rows += table.num_rows
        if self._group_rows >= self._row_group_size:
            self._write_group()

    def _write_group(self) -> None:
        if self._group:
            table = self._pa.concat_tables(self._group, memory_pool=self._rows.memory_pool)
            self._file.write_table(table, row_group_size=table.num_rows)
            self._group, self._group_rows = [], 0

    def _flush_rows(self) -> None:
        table = self._take_table()
        if table is None:
            return
        # Arrow's own format: writing it costs a copy, where Parquet would encode the rows
        # once more; it is read back only by a resume.
        sink = self._pa.BufferOutputStream(memory_pool=self._rows.memory_pool)
        with self._pa.ipc.new_stream(sink, self._schema) as stream:
            stream.write_table(table)
        data = sink.getvalue()
        with open(self._dir / _part_name(self._next), "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        _fsync_directory(self._dir)
        self._next += 1
        self.length += data.size
        self._hash.update(data)
        self._to_output(table)

    def sync(self) -> int:
        self._flush_rows()
        return self.length

    def checksum(self) -> str | None:
        return self._hash.hexdigest()

    def close(self) -> None:
        self._flush_rows()
        if self._open:
            self._write_group()
            self._file.close()
            self._open = False

    def assemble(self) -> None:
        """Finish the output with every part's rows and move it into place atomically."""
        self.close()
        with open(self._output, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(self._output, self._path)
        _fsync_directory(self._path.parent)

    def remove_parts(self) -> None:
        """Remove the parts, once no state refers to them."""
        for part in self._dir.iterdir():
            part.unlink()
        self._dir.rmdir()


def verify_parquet_parts(path: Path, state: ExportState) -> hashlib._Hash:
    """Check that the parts of ``path`` a resume state covers are the ones the export wrote.

    Returns:
        The sha256 of those parts, to pass on as `ParquetPartsWriter`'s ``checksum``.

    Raises:
        StateError: a part is missing, they do not add up to the state's length, or their bytes
            differ from the ones it covers.
    """
    if state.sha256 is None:
        raise StateError(f"the resume state of {path} records no checksum to verify it with")
    folder = parts_dir_for(path)
    checksum = hashlib.sha256()
    length = index = 0
    while length < state.length:
        try:
            data = (folder / _part_name(index)).read_bytes()
        except FileNotFoundError:
            raise StateError(f"{folder / _part_name(index)} is missing") from None
        checksum.update(data)
        length += len(data)
        index += 1
    if length != state.length or checksum.hexdigest() != state.sha256:
        raise StateError(
            f"the parts in {folder} were changed after the export wrote them: they are not the "
            "ones its resume state covers"
        )
    return checksum


# -- the state file --------------------------------------------------------------------------


class StateError(SieveError):
    """A resume state that cannot be used: unreadable, written for other arguments, or for an
    output that has changed since."""


class OutputLockedError(SieveError):
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
    #: Ids of the first jobs of the listing this export wrote (at most `HEAD_IDS`), newest
    #: first: where an incremental export after this one stops (`export`'s ``stop_at``).
    head: list[str | int] = attrs.field(factory=list)


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
        doc = _versioned_document(data, "resume state", STATE_VERSION)
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
                head=_ids(value.get("head", []), f"{where}.head"),
            )
        return cls(
            params=_field(doc.get("params"), "params", dict, "an object"),
            listings=listings,
            length=_count(doc.get("length"), "length"),
            jobs=_count(doc.get("jobs"), "jobs"),
            sha256=sha256,
        )


def _versioned_document(data: bytes, what: str, version: int) -> dict[str, Any]:
    """A JSON object of format ``version``, or a `StateError` saying what is wrong with it."""
    try:
        loaded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"the {what} is damaged: not JSON ({exc})") from exc
    doc: dict[str, Any] = _field(loaded, "the state", dict, "an object")
    found = _field(doc.get("version"), "version", int, "a number")
    if found != version:
        raise StateError(f"unsupported {what} version {found!r}")
    return doc


def _field(value: Any, name: str, kind: Any, expected: str) -> Any:
    """``value`` if it is a ``kind``; a missing key arrives as ``None`` (or ``...`` where
    ``None`` is allowed)."""
    if value is ... or (value is None and not isinstance(None, kind)):
        raise StateError(f"the resume state is damaged: {name} is missing")
    if not isinstance(value, kind):
        raise StateError(f"the resume state is damaged: {name} should be {expected}, not {value!r}")
    return value


def _ids(value: Any, name: str) -> list[str | int]:
    """A list of job ids (strings or integers), or `StateError` naming ``name``."""
    if not isinstance(value, list) or not all(map(is_id, value)):
        raise StateError(
            f"the resume state is damaged: {name} should be a list of ids, not {value!r}"
        )
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
    _replace(path, state.to_json())


def _replace(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file, fsync-ed, renamed over."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


#: The version of the incremental state format (`load_heads`, `save_heads`).
HEADS_VERSION: Final = 1


def load_heads(path: Path) -> dict[str, list[str | int]]:
    """The incremental state at ``path``: per listing, the ids its last export started from.

    Returns an empty mapping if there is no file yet (the first run exports everything).

    Raises:
        StateError: the file exists but is not such a state; the message names it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        doc = _versioned_document(data, "incremental state", HEADS_VERSION)
        heads = {}
        for name, ids in _field(doc.get("listings"), "listings", dict, "an object").items():
            FunctionRef.parse(name)
            heads[name] = _ids(ids, f"listings[{name!r}]")
        return heads
    except (StateError, ValueError) as exc:
        raise StateError(f"{path}: {exc}") from exc


def save_heads(path: Path, heads: Mapping[str, Sequence[str | int]]) -> None:
    """Replace the incremental state at ``path`` atomically (see `load_heads`)."""
    doc = {"version": HEADS_VERSION, "listings": {name: list(ids) for name, ids in heads.items()}}
    _replace(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def advance_heads(
    heads: Mapping[str, Sequence[str | int]], state: ExportState
) -> dict[str, list[str | int]]:
    """``heads`` moved on by a finished export started from them: each listing's newest ids
    are the ones ``state`` wrote first, then the ones it stopped at (at most `HEAD_IDS`)."""
    moved = {name: list(ids) for name, ids in heads.items()}
    for name, listing in state.listings.items():
        ids = list(dict.fromkeys([*listing.head, *moved.get(name, [])]))
        moved[name] = ids[:HEAD_IDS]
    return moved


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
    """Apply ``since`` to one page: (jobs to keep, stop the listing, unordered, newest seen last);
    the rule is `sieve_async._window.select`'s. A job whose ``created_at`` cannot be read (year
    0, say) is kept, with a warning: it is neither compared nor allowed to cost the page its
    other jobs."""
    keep, stop, unordered, previous = select(
        [_created_or_none(job) for job in jobs], CreatedWindow(since, None), previous, unordered
    )
    return [jobs[index] for index in keep], stop, unordered, previous


def _created_or_none(job: Job) -> datetime | None:
    try:
        return job.created_at
    except SieveDecodeError as exc:
        logger.warning("written without comparing it with since: %s", exc)
        return None


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
    stop_at: Mapping[str, Collection[str | int]] | None = None,
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
        stop_at: per listing (``owner/name``), ids of jobs an earlier export already holds,
            such as the `ListingState.head` of its state: the listing stops before the first
            of them it meets, so only jobs newer than that export are written.

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
    window = _Window(since, max_jobs, stop_at or {})
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
                    _write_page(writer, ref, jobs, state, result)
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
        window.warn_unreached(result.completed)
        if on_progress is not None:
            on_progress(result)
    finally:
        # A listing seen to its end had every page written before its end was seen.
        for ref in jobs_by_page.done:
            state.listings[str(ref)].done = True
        result.elapsed = time.monotonic() - started
        _finish(result, writer, state, state_path)
    return result


def _write_page(
    writer: Writer, ref: FunctionRef, jobs: Sequence[Job], state: ExportState, result: ExportResult
) -> None:
    """Write ``jobs`` of ``ref`` and count them; the first jobs of a listing are its head."""
    writer.write(ref, jobs)
    listing = state.listings[str(ref)]
    if len(listing.head) < HEAD_IDS:
        listing.head += [job.id for job in jobs[: HEAD_IDS - len(listing.head)]]
    state.jobs += len(jobs)
    result.jobs += len(jobs)
    result.total_jobs = state.jobs
    result.pages += 1


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
) -> FanOut | _OneListing:
    """The fan-out over ``todo``, each listing resumed from its checkpoint in ``state``; one
    listing alone is read with read-ahead instead (`_OneListing`)."""
    resume = {
        str(ref): checkpoint
        for ref in todo
        if (checkpoint := state.listings[str(ref)].checkpoint) is not None
    }
    try:
        if len(todo) == 1 and concurrency > 1:
            ref = todo[0]
            paginator = sieve.list_function_jobs(
                ref.owner_name,
                ref.name,
                status=status,
                page_size=page_size,
                resume=resume.get(str(ref)),
                read_ahead=min(ONE_LISTING_READ_AHEAD, concurrency - 1),
            )
            return _OneListing(ref, paginator, resume.get(str(ref)))
        # No read-ahead in the fan-out: at most `concurrency` requests in flight.
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


#: Pages fetched ahead of the one being written when an export reads a single listing.
ONE_LISTING_READ_AHEAD: Final = 2


class _OneListing:
    """One listing with the part of `FanOut`'s interface the export loop uses.

    A fan-out has one request in flight per listing, so an export of a single listing would
    wait for each page while the server makes it, then make the server wait while it writes.
    Read-ahead lets the two overlap (the request slots the fan-out would leave idle), with the
    same checkpoints: each page is handed out whole, so its checkpoint covers all of it.
    """

    def __init__(
        self, ref: FunctionRef, paginator: AsyncPaginator[Job], resumed: Checkpoint | None
    ) -> None:
        self._ref = ref
        self._paginator = paginator
        self._checkpoint = resumed
        self.done: set[FunctionRef] = set()
        self.failures: list[tuple[FunctionRef, SieveError]] = []
        self._pages: AsyncIterator[Page[Job]] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._paginator.aclose()

    def pages(self) -> Self:
        """``(ref, jobs)`` a page at a time; a failure is recorded in `failures`, as
        ``on_error="continue"`` does."""
        self._pages = self._paginator.pages()
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[FunctionRef, Sequence[Job]]:
        ref = self._ref
        if ref in self.done or self.failures or self._pages is None:
            raise StopAsyncIteration
        try:
            page = await anext(self._pages)
        except StopAsyncIteration:
            self.done.add(ref)
            raise
        except SieveError as error:
            logger.info("listing %s failed: %s", ref, error)
            self.failures.append((ref, error))
            raise StopAsyncIteration from None
        self._checkpoint = page.checkpoint_after(len(page.items))
        return ref, page.items

    def stop(self, ref: FunctionRef) -> None:
        """End the listing: no more of its pages are handed out, and it counts as done."""
        self.done.add(ref)

    def checkpoint_of(self, ref: FunctionRef) -> Checkpoint | Literal["done"] | None:
        """``"done"``, or the checkpoint after the last page handed out (or resumed from)."""
        return "done" if ref in self.done else self._checkpoint


class _Window:
    """Which jobs of a page go out: those created since ``since``, up to ``max_jobs`` in all."""

    def __init__(
        self,
        since: datetime | None,
        max_jobs: int | None,
        stop_at: Mapping[str, Collection[str | int]],
    ) -> None:
        self.since = since
        self.max_jobs = max_jobs
        #: The output reached ``max_jobs``.
        self.truncated = False
        self._newest_seen: dict[FunctionRef, datetime | None] = {}
        self._stop_at = {name: frozenset(ids) for name, ids in stop_at.items() if ids}
        self._reached: set[str] = set()

    def _before_known(self, ref: FunctionRef, jobs: Sequence[Job]) -> tuple[Sequence[Job], bool]:
        """The jobs of ``jobs`` before the first one ``stop_at`` names, and whether one did."""
        known = self._stop_at.get(str(ref))
        if known:
            for index, job in enumerate(jobs):
                if job.id in known:
                    self._reached.add(str(ref))
                    return jobs[:index], True
        return jobs, False

    def warn_unreached(self, completed: Iterable[FunctionRef]) -> None:
        """Warn of each listing read to its end without meeting a job ``stop_at`` names."""
        for ref in completed:
            if str(ref) in self._stop_at and str(ref) not in self._reached:
                logger.warning(
                    "%s: the jobs the earlier export started from have all left the listing, "
                    "so all of it was exported",
                    ref,
                )

    def select(
        self, ref: FunctionRef, listing: ListingState, page: Sequence[Job], written: int
    ) -> tuple[Sequence[Job], bool]:
        """The jobs of ``page`` to write, and whether ``ref``'s listing can stop after it."""
        jobs, stop = self._before_known(ref, page)
        since = self.since
        if since is not None:
            was_unordered = listing.unordered
            jobs, old, listing.unordered, self._newest_seen[ref] = _since_window(
                jobs, since, self._newest_seen.get(ref), listing.unordered
            )
            stop = stop or old
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


def _tally(result: ExportResult, jobs_by_page: FanOut | _OneListing, listings: int) -> None:
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
