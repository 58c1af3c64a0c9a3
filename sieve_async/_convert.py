"""The one cattrs `Converter` of sieve_async, its hooks, and lazily typed listing items.

Built once at import. Hooks: naive ISO timestamps become timezone-aware UTC datetimes, a job
status the API has not documented stays a string, ``Job.outputs`` items may be an output or a
list of outputs, and fields the models do not know are ignored (cattrs' default).

Listing items (`Job`, `FunctionVersion`, `Function`) are typed on first read (see
`sieve_async._lazy`): `structure_fn` makes one from its raw dict, checking only its identity,
and this module hands the lazy fields its hooks. `structure_eager` is cattrs' generated
function for the whole item, the reference the lazy path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from types import NoneType, UnionType
from typing import Any, Final, TypeVar, Union, cast, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.gen import make_dict_structure_fn, override

from ._exceptions import SieveDecodeError, excerpt
from ._lazy import IDENTITY, use_hooks
from ._models import JobIO, JobStatus

__all__ = ["converter", "structure", "structure_eager", "structure_fn"]

T = TypeVar("T")

# detailed_validation=False: about a quarter faster, and failures are rewrapped below anyway.
converter = Converter(detailed_validation=False)


def _is_optional(tp: Any) -> bool:
    if get_origin(tp) not in (Union, UnionType):
        return False
    args = get_args(tp)
    return len(args) == 2 and NoneType in args


def _optional_hook(tp: Any) -> Callable[[Any, Any], Any]:
    # cattrs' own handler for ``X | None`` dispatches on ``X`` at every call; resolve it once.
    (inner,) = (arg for arg in get_args(tp) if arg is not NoneType)
    hook = converter.get_structure_hook(inner)

    def structure_optional(value: Any, _: Any) -> Any:
        return None if value is None else hook(value, inner)

    return structure_optional


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


# A dict lookup instead of ``JobStatus(value)``: the enum's own lookup is several times slower.
_STATUSES: Final[dict[Any, JobStatus]] = {status.value: status for status in JobStatus}


def _structure_status(value: Any, _: type) -> JobStatus | str | None:
    if value is None:
        return None
    try:
        status = _STATUSES.get(value)
    except TypeError:  # an unhashable value
        status = None
    return str(value) if status is None else status


def _structure_output(value: Any, _: type) -> JobIO | list[JobIO]:
    # Job.outputs: items are InputOutput or arrays of InputOutput (OpenAPI schema "Job").
    if isinstance(value, list):
        return [converter.structure(v, JobIO) for v in value]
    return converter.structure(value, JobIO)


converter.register_structure_hook_factory(_is_optional, _optional_hook)
converter.register_structure_hook(datetime, _structure_datetime)
converter.register_structure_hook(JobStatus | str | None, _structure_status)
converter.register_structure_hook(JobIO | list[JobIO], _structure_output)


def _malformed(cls: type[Any], value: Any) -> SieveDecodeError:
    keys = " and ".join(repr(key) for key in IDENTITY[cls])
    return SieveDecodeError(
        f"a listed {cls.__name__} is not a JSON object with {keys}: {excerpt(value)!r}",
        body_start=excerpt(value),
    )


def _lazy_constructor(cls: type[T]) -> Callable[[Any], T]:
    """A function making a lazily typed ``cls`` from a raw dict, checking only its identity."""
    required = IDENTITY[cls]
    required_set = frozenset(required)
    new = object.__new__

    if len(required) == 1:
        (key,) = required
        # Nearly every consumer reads the id, and a str id is its own structured value (the
        # converter's str hook returns a str unchanged), so it is set here rather than on
        # first read. Any other id type goes through the hook as usual.
        field_types = {f.name: f.type for f in attrs.fields(cast(Any, cls))}
        prefill = field_types[key] is str
        # Likewise a job's status, which consumers filter on: a documented status string is
        # one lookup in the table its hook uses. Anything else is left to the hook.
        statuses = _STATUSES if field_types.get("status") == JobStatus | str | None else {}

        def make_one_key(value: Any) -> T:
            if not isinstance(value, dict) or key not in value:
                raise _malformed(cls, value)
            instance = new(cls)
            fields = instance.__dict__
            fields["raw"] = value
            ident = value[key]
            if ident.__class__ is str and prefill:
                fields[key] = ident
            status = value.get("status")
            if status.__class__ is str:
                known = statuses.get(status)
                if known is not None:
                    fields["status"] = known
            return instance

        return make_one_key

    def make(value: Any) -> T:
        if not isinstance(value, dict) or not value.keys() >= required_set:
            raise _malformed(cls, value)
        instance = new(cls)
        instance.__dict__["raw"] = value
        return instance

    return make


def _eager_constructor(cls: type[T]) -> Callable[[Any], T]:
    """cattrs' generated structuring function for ``cls``, with ``raw`` set to the source dict."""
    base = make_dict_structure_fn(cls, converter, raw=override(omit=True))

    def structure_with_raw(value: Any) -> T:
        instance = base(value, cls)
        object.__setattr__(instance, "raw", value)
        return instance

    return structure_with_raw


_LAZY: dict[type[Any], Callable[[Any], Any]] = {}
_EAGER: dict[type[Any], Callable[[Any], Any]] = {}

use_hooks(converter.get_structure_hook)
for _cls in IDENTITY:
    _LAZY[_cls] = _lazy_constructor(_cls)
    _EAGER[_cls] = _eager_constructor(_cls)
    converter.register_structure_hook(_cls, lambda value, cls: _LAZY[cls](value))


def structure_fn(cls: type[T]) -> Callable[[Any], T]:
    """The cheapest function turning one raw listing item into a ``cls``.

    For the lazily typed classes it checks the item's identity only; fields are structured when
    read. Failures are `SieveDecodeError`.
    """
    lazy = _LAZY.get(cls)
    if lazy is not None:
        return cast(Callable[[Any], T], lazy)
    return partial(structure, cls=cls)


def structure(value: Any, cls: type[T]) -> T:
    """Structure ``value`` as ``cls`` (lazily for listing items), failing as `SieveDecodeError`."""
    try:
        return converter.structure(value, cls)
    except SieveDecodeError:
        raise
    except Exception as exc:
        raise _structure_error(value, cls, exc) from exc


def structure_eager(value: Any, cls: type[T]) -> T:
    """Structure every field of ``value`` now, through cattrs' generated function for ``cls``.

    The reference the lazy path is tested against, and a way to surface every malformed field of
    an item at once.
    """
    try:
        eager = _EAGER.get(cls)
        if eager is not None:
            return cast(T, eager(value))
        return converter.structure(value, cls)
    except Exception as exc:
        raise _structure_error(value, cls, exc) from exc


def _structure_error(value: Any, cls: type[Any], exc: Exception) -> SieveDecodeError:
    ident = value.get("id") if isinstance(value, dict) else None
    where = f" (id {ident!r})" if ident else ""
    return SieveDecodeError(
        f"could not read a {cls.__name__}{where} from the response: {exc!r}",
        body_start=excerpt(value),
    )
