"""What a consumer reads of each job, the same code for every contender.

Three ways: the ``id`` alone; ``id``, ``status`` and ``created_at``; and every field, nested
ones included, as an exporter or an ORM loader would. Dicts are read with ``.get`` and objects
with ``getattr`` (absent attributes read as ``None``), by the same functions, so a contender's
figure differs from another's by what it costs to make and hold its values, not by how they are
read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from sieve_async import FunctionRef, Job, JobIO, Restart

Read = Callable[[Any], None]

JOB_FIELDS = tuple(a.name for a in attrs.fields(Job) if a.name != "raw")
IO_FIELDS = tuple(a.name for a in attrs.fields(JobIO))
REF_FIELDS = tuple(a.name for a in attrs.fields(FunctionRef))
RESTART_FIELDS = tuple(a.name for a in attrs.fields(Restart))


def _field(value: Any, name: str) -> Any:
    if value.__class__ is dict:
        return value.get(name)
    return getattr(value, name, None)


def _fields(value: Any, names: tuple[str, ...]) -> None:
    if value.__class__ is dict:
        for name in names:
            value.get(name)
    else:
        for name in names:
            getattr(value, name, None)


def read_id(job: Any) -> None:
    """The ``id`` only."""
    _field(job, "id")


def read_three(job: Any) -> None:
    """``id``, ``status`` and ``created_at``."""
    _field(job, "id")
    _field(job, "status")
    _field(job, "created_at")


def _io(value: Any) -> None:
    if value.__class__ is list:
        for item in value:
            _io(item)
    elif value is not None and not isinstance(value, str | int | float | bool):
        _fields(value, IO_FIELDS)


def read_all(job: Any) -> None:
    """Every field, and every field of each input, output, restart and the function."""
    _fields(job, JOB_FIELDS)
    function = _field(job, "function")
    if function is not None:
        _fields(function, REF_FIELDS)
    for value in (_field(job, "inputs") or {}).values():
        _io(value)
    for value in _field(job, "outputs") or ():
        _io(value)
    for restart in _field(job, "restarts") or ():
        _fields(restart, RESTART_FIELDS)


#: Each way of reading, by the name the figures use.
READS: dict[str, Read] = {
    "id": read_id,
    "id, status, created_at": read_three,
    "every field": read_all,
}
