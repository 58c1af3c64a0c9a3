"""A job as a row of columns: the CSV and Parquet exports' layout, and Arrow tables of it.

One layout for every tabular form: ``CSV_COLUMNS`` (the function's ``owner/name``, the ``Job``
fields of the OpenAPI document in its order, and the fields this version does not model as JSON
text in ``_extra``). Timestamps are UTC in every format: text of one form in JSONL and CSV
(`utc_text`), UTC timestamps in Arrow and Parquet. CSV writes nested values as JSON text; Arrow
types them (`arrow_schema`): ``function`` a struct, ``inputs``, ``outputs`` and ``restarts``
lists of structs, and only values of any JSON type (``data``, ``schema``, ``children``) as text.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import orjson

from ._convert import parse_timestamp
from ._exceptions import SieveDecodeError
from ._models import Job

__all__ = [
    "ARROW_BATCH",
    "CSV_COLUMNS",
    "EXTRA_KEY",
    "FUNCTION_KEY",
    "JOB_FIELDS",
    "TIMESTAMP_FIELDS",
    "ArrowRows",
    "arrow_schema",
    "flat_row",
    "function_of",
    "json_text",
    "utc_text",
]

logger = logging.getLogger("sieve_async.export")

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
_CONTAINERS: Final = frozenset((dict, list))
#: The fields of a job that are timestamps, written in UTC in every format.
TIMESTAMP_FIELDS: Final = ("created_at", "started_at", "completed_at")
_TIMESTAMP_COLUMNS: Final = tuple(CSV_COLUMNS.index(name) for name in TIMESTAMP_FIELDS)
#: Rows gathered as Arrow record batches before they are put together into one table.
ARROW_BATCH: Final = 50_000
#: The text columns of the Arrow layout (the rest are timestamps or nested).
_TEXT_FIELDS: Final = (
    "id",
    "function_id",
    "organization_id",
    "status",
    "error",
    "visibility",
    "run_id",
)


def json_text(value: Any, option: int | None = None) -> bytes:
    """``value`` as JSON text, exactly as the server sent it."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        # What orjson cannot write, an integer beyond 64 bits or a lone surrogate (both read by
        # the standard library's slow path of `decode_page`), the standard library writes; its
        # ASCII escapes keep a lone surrogate valid JSON.
        text = json.dumps(value, separators=(",", ":"))
        return (text + "\n" if option == orjson.OPT_APPEND_NEWLINE else text).encode()


def utc_text(value: Any) -> Any:
    """A timestamp as UTC text of one form, ``2025-05-30T12:00:00.123456Z``; a value that is
    not an RFC 3339 date-time (or ``None``) is returned as it is."""
    if value.__class__ is str and len(value) == 26 and value[10] == "T" and value[19] == ".":
        # The API's own form, naive UTC with microseconds: checked, and only marked as UTC.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None and value[4] == "-" and value[7] == "-":
                return value + "Z"
    if value is None:
        return None
    try:
        moment = parse_timestamp(value)
    except ValueError:
        # Written as it came, nothing lost: text holds what a timestamp column could not.
        return value
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _scalar_or_json(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json_text(value).decode()
    return value


def _text(values: Iterable[Any]) -> list[str | None]:
    # A scalar field the API sends as a number or a boolean still fits one string column.
    return [
        None if v is None else v if isinstance(v, str) else json_text(v).decode() for v in values
    ]


def _extra(raw: dict[str, Any]) -> str | None:
    """The fields of ``raw`` this version does not model, as JSON text (``None``: none)."""
    if raw.keys() <= _KNOWN_FIELDS:
        return None
    return json_text({k: v for k, v in raw.items() if k not in _KNOWN_FIELDS}).decode()


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json_text(value).decode()


def flat_row(function: str | None, job: Job) -> list[Any]:
    """The ``CSV_COLUMNS`` of ``job``: scalars as they are, timestamps as `utc_text`, nested
    values as JSON text."""
    raw = job.raw
    row: list[Any] = [function]
    row += [
        json_text(value).decode() if value.__class__ in _CONTAINERS else value
        for value in map(raw.get, JOB_FIELDS)
    ]
    for index in _TIMESTAMP_COLUMNS:
        row[index] = utc_text(row[index])
    row.append(_extra(raw))
    return row


def function_of(job: Job) -> str | None:
    """The job's own ``owner/name``, for a listing that is not one function's (``None`` if
    it has none, or one that cannot be read)."""
    try:
        function = job.function
    except SieveDecodeError:
        return None
    return None if function is None else str(function)


def arrow_schema() -> Any:
    """The ``pyarrow.Schema`` of Arrow tables and Parquet files of jobs.

    ``function`` is a struct of ``name`` and ``owner_name``; ``inputs`` a list of structs, one
    per input, its name in ``input``; ``outputs`` a list of structs, one per output, with
    ``output`` its position (an output that is a list of items gives one struct per item, all
    with its position); both with the ``InputOutput`` fields, ``data`` and ``schema`` as JSON
    text. ``restarts`` is a list of structs. Timestamps are microseconds in UTC; ``children``
    and ``_extra`` JSON text, every other column text.
    """
    pa = _pyarrow()
    text, stamp = pa.string(), pa.timestamp("us", tz="UTC")
    io_fields = [
        pa.field("type", text),
        pa.field("name", text),
        pa.field("data", text),
        pa.field("description", text),
        pa.field("schema", text),
        pa.field("run_id", text),
        pa.field("is_optional", pa.bool_()),
    ]
    kinds: dict[str, Any] = dict.fromkeys(
        (FUNCTION_KEY, *_TEXT_FIELDS, "children", EXTRA_KEY), text
    )
    kinds.update(dict.fromkeys(TIMESTAMP_FIELDS, stamp))
    kinds["function"] = pa.struct([pa.field("name", text), pa.field("owner_name", text)])
    kinds["inputs"] = pa.list_(pa.struct([pa.field("input", text), *io_fields]))
    kinds["outputs"] = pa.list_(pa.struct([pa.field("output", pa.int32()), *io_fields]))
    kinds["restarts"] = pa.list_(
        pa.struct(
            [
                pa.field("timestamp", stamp),
                pa.field("reason", text),
                pa.field("type", text),
                pa.field("run_id", text),
            ]
        )
    )
    return pa.schema([pa.field(name, kinds[name]) for name in CSV_COLUMNS])


def _pyarrow() -> Any:
    try:
        import pyarrow as pa  # noqa: PLC0415 - an optional extra, imported only when asked for
    except ImportError as exc:
        raise ImportError(
            "Arrow tables and Parquet need pyarrow: pip install 'sieve-async[parquet]'"
        ) from exc
    return pa


# -- nested values as Arrow structs: a quick form for what the document says, a careful one
# for anything else (a value of another JSON type is written as JSON text, or left out).

_IO_TEXT: Final = ("type", "name", "description", "run_id")


def _io_quick(value: Any) -> dict[str, Any]:
    if value.__class__ is not dict:
        return {"data": json_text(value).decode()}
    data, schema = value.get("data"), value.get("schema")
    return {
        **value,
        "data": None if data is None else json_text(data).decode(),
        "schema": None if schema is None else json_text(schema).decode(),
    }


def _io_careful(value: Any) -> dict[str, Any]:
    io = _io_quick(value)
    for key in _IO_TEXT:
        part = io.get(key)
        if part is not None and part.__class__ is not str:
            io[key] = json_text(part).decode()
    if io.get("is_optional").__class__ is not bool:
        io["is_optional"] = None
    return io


def _inputs(value: Any, io: Any) -> list[dict[str, Any]] | None:
    if value.__class__ is not dict:
        return None
    return [{**io(item), "input": name} for name, item in value.items()]


def _outputs(value: Any, io: Any) -> list[dict[str, Any]] | None:
    if value.__class__ is not list:
        return None
    items = []
    for index, item in enumerate(value):
        for part in item if item.__class__ is list else (item,):
            items.append({**io(part), "output": index})
    return items


def _restarts(value: Any) -> list[dict[str, Any]] | None:
    if value.__class__ is not list:
        return None
    restarts = []
    for item in value:
        if item.__class__ is not dict:
            continue
        restart: dict[str, Any] = {k: _text([item.get(k)])[0] for k in ("reason", "type", "run_id")}
        restart["timestamp"] = _time_or_none(item.get("timestamp"))
        restarts.append(restart)
    return restarts


def _function(value: Any) -> dict[str, Any] | None:
    if value.__class__ is not dict:
        return None
    return {k: _text([value.get(k)])[0] for k in ("name", "owner_name")}


_Convert = Callable[[list[Any]], list[Any]]


def _each(convert: Callable[[Any], Any]) -> _Convert:
    return lambda values: [None if value is None else convert(value) for value in values]


#: Each nested column, with a quick and a careful way to make its values Arrow's.
_NESTED: Final[tuple[tuple[str, _Convert, _Convert], ...]] = (
    ("function", lambda values: values, _each(_function)),
    (
        "inputs",
        lambda values: [_inputs(value, _io_quick) for value in values],
        lambda values: [_inputs(value, _io_careful) for value in values],
    ),
    (
        "outputs",
        lambda values: [_outputs(value, _io_quick) for value in values],
        lambda values: [_outputs(value, _io_careful) for value in values],
    ),
    ("restarts", _each(_restarts), _each(_restarts)),
)


class ArrowRows:
    """Rows of jobs gathered for Arrow: `add` pages of them, `take` a ``pyarrow.Table``.

    Each page becomes a record batch as it is added, so what is held is Arrow's compact
    columns, not Python objects.

    Raises:
        ImportError: pyarrow is not installed, naming the extra that installs it.
    """

    def __init__(self) -> None:
        pa = self._pa = _pyarrow()
        #: Where this and the writers of its tables allocate: the C library's ``malloc``.
        #: pyarrow's default (mimalloc) keeps what encoding a row group used: writing one of
        #: 10,000 jobs left the process 23 MiB larger, against 6 MiB with ``malloc``.
        self.memory_pool = pa.system_memory_pool()
        self._array = functools.partial(pa.array, memory_pool=self.memory_pool)
        #: The ``pyarrow.Schema`` of every table `take` returns (`arrow_schema`).
        self.schema = arrow_schema()
        self._stamp = pa.timestamp("us", tz="UTC")
        self._batches: list[Any] = []
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, function: str | None, jobs: Sequence[Job]) -> None:
        """Gather ``jobs`` of ``function`` (``None``: each job's own, see `function_of`)."""
        if not jobs:
            return
        pa, schema = self._pa, self.schema
        raws = [job.raw for job in jobs]
        names = [function] * len(jobs) if function is not None else map(function_of, jobs)
        columns: dict[str, Any] = {FUNCTION_KEY: self._array(names, pa.string())}
        for name in _TEXT_FIELDS:
            columns[name] = self._text_column([raw.get(name) for raw in raws])
        for name in TIMESTAMP_FIELDS:
            columns[name] = self._times(name, [raw.get(name) for raw in raws], jobs, function)
        for name, quick, careful in _NESTED:
            columns[name] = self._nested(name, [raw.get(name) for raw in raws], quick, careful)
        columns["children"] = self._array(
            [_json_or_none(raw.get("children")) for raw in raws], pa.string()
        )
        columns[EXTRA_KEY] = self._array([_extra(raw) for raw in raws], pa.string())
        self._batches.append(
            pa.RecordBatch.from_arrays([columns[name] for name in schema.names], schema=schema)
        )
        self._rows += len(jobs)

    def _text_column(self, values: list[Any]) -> Any:
        pa = self._pa
        try:
            return self._array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # A scalar field the API sends as a number or a boolean still fits one text column.
            return self._array(_text(values), pa.string())

    def _times(
        self, name: str, values: list[Any], jobs: Sequence[Job], function: str | None
    ) -> Any:
        """UTC timestamps, read as the models read them (an unreadable value leaves its cell
        empty, with a warning)."""
        moments: list[datetime | None] = []
        append = moments.append
        parse = datetime.fromisoformat
        for value, job in zip(values, jobs, strict=True):
            if value is None:
                append(None)
                continue
            if value.__class__ is str and len(value) == 26 and value[10] == "T":
                # The API's own form, naive UTC with microseconds; Arrow takes naive as UTC.
                try:
                    moment = parse(value)
                except ValueError:
                    pass
                else:
                    if moment.tzinfo is None:
                        append(moment)
                        continue
            append(_typed_time(job, name, function))
        return self._array(moments, self._stamp)

    def _nested(self, name: str, values: list[Any], quick: _Convert, careful: _Convert) -> Any:
        """The column ``name`` as its Arrow type: the values made ``quick``ly, or if that does
        not fit the type, ``careful``ly (values of the wrong JSON type as text, or null)."""
        pa = self._pa
        kind = self.schema.field(name).type
        try:
            return self._array(quick(values), kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, AttributeError):
            return self._array(careful(values), kind)

    def take(self) -> Any:
        """A ``pyarrow.Table`` of the rows gathered since the last `take` (maybe none)."""
        batches, self._batches, self._rows = self._batches, [], 0
        return self._pa.Table.from_batches(batches, schema=self.schema)

    async def gather(self, pages: AsyncIterable[tuple[str | None, Sequence[Job]]]) -> Any:
        """One ``pyarrow.Table`` of every ``(function, jobs)`` of ``pages``."""
        async for function, jobs in pages:
            self.add(function, jobs)
        return self.take()


def _typed_time(job: Job, name: str, function: str | None) -> datetime | None:
    try:
        moment: datetime | None = getattr(job, name)
    except SieveDecodeError as exc:
        # One unreadable timestamp leaves its cell empty, not the page unwritten.
        logger.warning("%s: %s; the cell is left empty", function or "a listing", exc)
        return None
    return moment


def _time_or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        # One unreadable timestamp leaves its cell empty, not the page unwritten.
        logger.warning("a timestamp cell is left empty: %s", exc)
        return None
