"""A job as a row of columns: the CSV and Parquet exports' layout, and Arrow tables of it.

One layout for every tabular form: ``CSV_COLUMNS`` (the function's ``owner/name``, the ``Job``
fields of the OpenAPI document in its order, and the fields this version does not model as JSON
text in ``_extra``). Arrow and Parquet type the three timestamps as UTC timestamps and every
other column as text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any, Final

import orjson

from ._exceptions import SieveDecodeError
from ._models import Job

__all__ = [
    "ARROW_BATCH",
    "CSV_COLUMNS",
    "EXTRA_KEY",
    "FUNCTION_KEY",
    "JOB_FIELDS",
    "ArrowRows",
    "flat_row",
    "function_of",
    "json_text",
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
_TIMESTAMP_FIELDS: Final = ("created_at", "started_at", "completed_at")
_TIMESTAMP_COLUMNS: Final = tuple(CSV_COLUMNS.index(name) for name in _TIMESTAMP_FIELDS)
#: Rows turned into Arrow columns at a time.
ARROW_BATCH: Final = 50_000


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


def _scalar_or_json(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json_text(value).decode()
    return value


def _text(values: Iterable[Any]) -> list[str | None]:
    # A scalar field the API sends as a number or a boolean still fits one string column.
    return [
        None if v is None else v if isinstance(v, str) else json_text(v).decode() for v in values
    ]


def flat_row(function: str | None, job: Job) -> list[Any]:
    """The ``CSV_COLUMNS`` of ``job``: scalars as they are, nested values as JSON text."""
    raw = job.raw
    row: list[Any] = [function]
    row.extend(_scalar_or_json(raw.get(name)) for name in JOB_FIELDS)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_FIELDS}
    row.append(json_text(extra).decode() if extra else None)
    return row


def function_of(job: Job) -> str | None:
    """The job's own ``owner/name``, for a listing that is not one function's."""
    return None if job.function is None else str(job.function)


class ArrowRows:
    """Rows of jobs gathered for Arrow: `add` pages of them, `take` a ``pyarrow.Table``.

    Raises:
        ImportError: pyarrow is not installed, naming the extra that installs it.
    """

    def __init__(self) -> None:
        try:
            import pyarrow as pa  # noqa: PLC0415 - an optional extra, imported only when asked for
        except ImportError as exc:
            raise ImportError(
                "Arrow tables and Parquet need pyarrow: pip install 'sieve-async[parquet]'"
            ) from exc
        self._pa = pa
        fields = []
        for name in CSV_COLUMNS:
            kind = pa.timestamp("us", tz="UTC") if name in _TIMESTAMP_FIELDS else pa.string()
            fields.append(pa.field(name, kind))
        #: The ``pyarrow.Schema`` of every table `take` returns.
        self.schema = pa.schema(fields)
        self._rows: list[list[Any]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, function: str | None, jobs: Sequence[Job]) -> None:
        """Gather ``jobs`` of ``function`` (``None``: each job's own, see `function_of`)."""
        for job in jobs:
            name = function_of(job) if function is None else function
            row = flat_row(name, job)
            for index in _TIMESTAMP_COLUMNS:
                try:
                    row[index] = getattr(job, CSV_COLUMNS[index])
                except SieveDecodeError as exc:
                    # One unreadable timestamp leaves its cell empty, not the page unwritten.
                    logger.warning("%s: %s; the cell is left empty", name, exc)
                    row[index] = None
            self._rows.append(row)

    def take(self) -> Any:
        """A ``pyarrow.Table`` of the rows gathered since the last `take` (maybe none)."""
        pa = self._pa
        rows, self._rows = self._rows, []
        columns = zip(*rows, strict=True) if rows else ([] for _ in self.schema)
        arrays = [
            pa.array(values if field.name in _TIMESTAMP_FIELDS else _text(values), type=field.type)
            for values, field in zip(columns, self.schema, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    async def gather(self, pages: AsyncIterable[tuple[str | None, Sequence[Job]]]) -> Any:
        """One ``pyarrow.Table`` of every ``(function, jobs)`` of ``pages``, converted
        `ARROW_BATCH` rows at a time so that the Python rows of a whole listing are never held."""
        tables = []
        async for function, jobs in pages:
            self.add(function, jobs)
            if len(self._rows) >= ARROW_BATCH:
                tables.append(self.take())
        tables.append(self.take())
        return self._pa.concat_tables(tables)
