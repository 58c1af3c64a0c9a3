"""The one cattrs `Converter` of sieve_async and its hooks.

Built once at import. Hooks: naive ISO timestamps become timezone-aware UTC datetimes, a job
status the API has not documented stays a string, ``Job.outputs`` items may be an output or a
list of outputs, and fields the models do not know are ignored (cattrs' default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from cattrs import Converter
from cattrs.gen import make_dict_structure_fn, override

from ._exceptions import SieveDecodeError
from ._models import Function, FunctionVersion, Job, JobIO, JobStatus

__all__ = ["converter", "structure"]

T = TypeVar("T")

# detailed_validation=False: about a quarter faster, and failures are rewrapped below anyway.
converter = Converter(detailed_validation=False)


def _structure_datetime(value: Any, _: type) -> datetime:
    # The API sends naive ISO 8601 strings in UTC ("2024-12-15T01:41:59.195000").
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an ISO 8601 timestamp, got {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _structure_status(value: Any, _: type) -> JobStatus | str | None:
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        return str(value)


def _structure_output(value: Any, _: type) -> JobIO | list[JobIO]:
    # Job.outputs: items are InputOutput or arrays of InputOutput (OpenAPI schema "Job").
    if isinstance(value, list):
        return [converter.structure(v, JobIO) for v in value]
    return converter.structure(value, JobIO)


converter.register_structure_hook(datetime, _structure_datetime)
converter.register_structure_hook(JobStatus | str | None, _structure_status)
converter.register_structure_hook(JobIO | list[JobIO], _structure_output)


def _with_raw(cls: type[T]) -> None:
    """Structure ``cls`` with its ``raw`` field set to the source dict itself."""
    base = make_dict_structure_fn(cls, converter, raw=override(omit=True))

    def structure_with_raw(value: Any, _: type) -> T:
        instance = base(value, cls)
        object.__setattr__(instance, "raw", value)
        return instance

    converter.register_structure_hook(cls, structure_with_raw)


for _cls in (Job, FunctionVersion, Function):
    _with_raw(_cls)


def structure(value: Any, cls: type[T]) -> T:
    """Structure ``value`` as ``cls``, reporting failure as `SieveDecodeError`."""
    try:
        return converter.structure(value, cls)
    except Exception as exc:
        ident = value.get("id") if isinstance(value, dict) else None
        where = f" (id {ident!r})" if ident else ""
        raise SieveDecodeError(
            f"could not read a {cls.__name__}{where} from the response: {exc!r}"
        ) from exc
