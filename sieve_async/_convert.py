"""The one cattrs `Converter` of sieve_async, its hooks, and lazily typed listing items.

Built once at import. The hooks read each value as the JSON type the OpenAPI document gives its
field and refuse any other (`BadValue`, which the callers turn into a `SieveDecodeError` naming
the field and the item): cattrs' own hooks for ``str``, ``int``, ``bool``, lists and dicts
coerce (``5`` to ``'5'``, ``"no"`` to ``True``, a string to a list of its characters).

Besides: RFC 3339 timestamps become timezone-aware UTC datetimes (naive ones are read as UTC),
an enum value the API has not documented stays a string, ``Job.outputs`` items may be an output
or a list of outputs, ``Job.inputs`` values are `JobIO` where ``InputOutput``-shaped and the
JSON value otherwise, and fields the models do not know are ignored (cattrs' default).

Listing items (`Job`, `FunctionVersion`, `Function`) are typed on first read (see
`sieve_async._lazy`): `structure_fn` makes one from its raw dict, checking only its identity,
and this module hands the lazy fields its hooks. `structure_eager` is cattrs' generated
function for the whole item, the reference the lazy path is tested against.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial, reduce
from operator import or_
from types import NoneType, UnionType
from typing import Annotated, Any, Final, TypeVar, Union, cast, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import ClassValidationError
from cattrs.gen import make_dict_structure_fn, override

from ._exceptions import SieveDecodeError, excerpt
from ._lazy import IDENTITY, BadValue, field_error, use_hooks
from ._models import (
    INPUT_OUTPUT_KEYS,
    FieldRule,
    FunctionRef,
    JobIO,
    JobStatus,
    Restart,
    Webhook,
    WorkerCounts,
)

__all__ = ["converter", "parse_timestamp", "structure", "structure_eager", "structure_fn"]

T = TypeVar("T")

# detailed_validation=False: about a quarter faster, and failures are rewrapped below anyway.
converter = Converter(detailed_validation=False)

Hook = Callable[[Any, Any], Any]

#: What a JSON type is called in messages.
_JSON_NAMES: Final[dict[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    NoneType: "null",
}


def _shown(value: Any) -> str:
    return excerpt(value).decode(errors="replace")


def _wrong_type(value: Any, expected: str) -> BadValue:
    sent = _JSON_NAMES.get(type(value), type(value).__name__)
    return BadValue(f"expected {expected}, got {sent} {_shown(value)}")


# -- scalars: the JSON type, never a conversion -----------------------------------------------


def _structure_str(value: Any, _: Any) -> str:
    if value.__class__ is str:
        return value
    raise _wrong_type(value, "a string")


def _structure_int(value: Any, _: Any) -> int:
    # bool is an int to Python, never to JSON.
    if value.__class__ is int:
        return value
    raise _wrong_type(value, "an integer")


def _structure_bool(value: Any, _: Any) -> bool:
    if value.__class__ is bool:
        return value
    raise _wrong_type(value, "a boolean")


def _structure_any(value: Any, _: Any) -> Any:
    return value


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook(Any, _structure_any)


# -- timestamps --------------------------------------------------------------------------------

#: RFC 3339 ``date-time`` (section 5.6), with the offset optional: the API's examples omit it.
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)


_fromisoformat: Final = datetime.fromisoformat


def _structure_datetime(value: Any, _: Any) -> datetime:
    if value.__class__ is not str:
        raise _wrong_type(value, "an RFC 3339 date-time string")
    try:
        # The API sends naive UTC ("2024-12-15T01:41:59.195000"). Appending the offset lets the
        # C parser return an aware UTC datetime at once: ``replace(tzinfo=UTC)`` costs four
        # times the parse. A string that already has an offset fails here and is read below.
        return _fromisoformat(value + "+00:00")
    except ValueError:
        pass
    try:
        parsed = _fromisoformat(value)
    except ValueError:
        return _parse_rfc3339(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _unrepresentable(value, "in UTC it falls outside years 1 to 9999") from None


def _parse_rfc3339(text: str) -> datetime:
    """The RFC 3339 forms ``fromisoformat`` refuses: a lowercase ``z``, a leap second, year 0."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise BadValue(f"{_shown(text)} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(group) for group in match.groups()[:6])
    fraction, _zulu, sign, offset_hours, offset_minutes = match.groups()[6:]
    micro = int((fraction or "")[:6].ljust(6, "0"))
    if second == 60:
        # A leap second: Python has none, so it reads as the last microsecond before the next
        # minute, which keeps the order of instants (and any --since comparison) right.
        second, micro = 59, 999_999
    if year == 0:
        raise _unrepresentable(text, "Python's datetime has no year 0")
    try:
        moment = datetime(year, month, day, hour, minute, second, micro)
    except ValueError as exc:
        raise BadValue(f"{_shown(text)} is not an RFC 3339 date-time ({exc})") from None
    if sign is not None:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            raise BadValue(f"{_shown(text)} is not an RFC 3339 date-time (offset out of range)")
        offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        try:
            moment = moment - offset if sign == "+" else moment + offset
        except OverflowError:
            raise _unrepresentable(text, "in UTC it falls outside years 1 to 9999") from None
    return moment.replace(tzinfo=UTC)


def _unrepresentable(text: str, why: str) -> BadValue:
    return BadValue(f"{_shown(text)} is a valid RFC 3339 date-time that cannot be read: {why}")


converter.register_structure_hook(datetime, _structure_datetime)


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time as the models read it, in UTC (a naive one taken as UTC).

    Raises:
        ValueError: it is not one, or Python cannot hold the instant.
    """
    return _structure_datetime(text, datetime)


# -- containers --------------------------------------------------------------------------------


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is list


def _list_hook(tp: Any) -> Hook:
    (item_type,) = get_args(tp) or (Any,)
    hook = converter.get_structure_hook(item_type)

    def structure_list(value: Any, _: Any) -> list[Any]:
        if value.__class__ is not list:
            raise _wrong_type(value, "an array")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(hook(item, item_type))
            except BadValue as exc:
                raise exc.inside(f"[{index}]") from exc
        return out

    return structure_list


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict


def _dict_hook(tp: Any) -> Hook:
    # JSON object keys are strings; only the values need a hook.
    _, value_type = get_args(tp) or (str, Any)
    hook = converter.get_structure_hook(value_type)

    def structure_dict(value: Any, _: Any) -> dict[str, Any]:
        if value.__class__ is not dict:
            raise _wrong_type(value, "an object")
        out = {}
        for key, item in value.items():
            try:
                out[key] = hook(item, value_type)
            except BadValue as exc:
                raise exc.inside(f"[{key!r}]") from exc
        return out

    return structure_dict


# -- unions: X | None, MaybeAbsent[X], enums that keep unknown values --------------------------


def _is_optional(tp: Any) -> bool:
    if get_origin(tp) not in (Union, UnionType):
        return False
    args = get_args(tp)
    return len(args) == 2 and NoneType in args


def _structure_str_or_none(value: Any, _: Any) -> str | None:
    if value.__class__ is str or value is None:
        return value
    raise _wrong_type(value, "a string")


def _structure_int_or_none(value: Any, _: Any) -> int | None:
    if value.__class__ is int or value is None:
        return value
    raise _wrong_type(value, "an integer")


def _structure_bool_or_none(value: Any, _: Any) -> bool | None:
    if value.__class__ is bool or value is None:
        return value
    raise _wrong_type(value, "a boolean")


def _structure_datetime_or_none(value: Any, _: Any) -> datetime | None:
    if value.__class__ is str:
        try:
            return _fromisoformat(value + "+00:00")
        except ValueError:
            pass
    elif value is None:
        return None
    return _structure_datetime(value, datetime)


#: ``X | None`` of a scalar in one call rather than two: most fields of a job are one of these.
_SCALAR_OR_NONE: Final[dict[Any, Hook]] = {
    str: _structure_str_or_none,
    int: _structure_int_or_none,
    bool: _structure_bool_or_none,
    datetime: _structure_datetime_or_none,
}


def _optional_hook(tp: Any) -> Hook:
    # cattrs' own handler for ``X | None`` dispatches on ``X`` at every call; resolve it once.
    (inner,) = (arg for arg in get_args(tp) if arg is not NoneType)
    fused = _SCALAR_OR_NONE.get(inner)
    if fused is not None:
        return fused
    hook = converter.get_structure_hook(inner)

    def structure_optional(value: Any, _: Any) -> Any:
        return None if value is None else hook(value, inner)

    return structure_optional


def _rules(tp: Any) -> tuple[Any, ...]:
    return tp.__metadata__ if get_origin(tp) is Annotated else ()


def _is_not_null(tp: Any) -> bool:
    return FieldRule.NOT_NULL in _rules(tp)


_NULL_REFUSED: Final = "got null, which the API document does not allow here"


def _structure_str_not_null(value: Any, _: Any) -> str:
    if value.__class__ is str:
        return value
    if value is None:
        raise BadValue(_NULL_REFUSED)
    raise _wrong_type(value, "a string")


def _not_null_hook(tp: Any) -> Hook:
    # MaybeAbsent[X] is Annotated[X | None, NOT_NULL]: None stands for a field left out, which
    # never reaches a hook; a null the server sends is refused.
    args = tuple(arg for arg in get_args(get_args(tp)[0]) if arg is not NoneType)
    inner = args[0] if len(args) == 1 else reduce(or_, args)
    if inner is str:
        return _structure_str_not_null
    hook = converter.get_structure_hook(inner)

    def structure_not_null(value: Any, _: Any) -> Any:
        if value is None:
            raise BadValue(_NULL_REFUSED)
        return hook(value, inner)

    return structure_not_null


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, UnionType)


def _is_id(tp: Any) -> bool:
    return FieldRule.ID in _rules(tp)


def _structure_id(value: Any, _: Any) -> str:
    # The paging layer accepts integer ids (`_paging.is_id`); one reads as its decimal text.
    if value.__class__ is str:
        return value
    if value.__class__ is int:
        return str(value)
    raise _wrong_type(value, "a string")


def _enum_of(tp: Any) -> type[enum.StrEnum] | None:
    """The StrEnum of ``E | str`` or ``E | str | None``, else None."""
    if not _is_union(tp):
        return None
    args = set(get_args(tp)) - {NoneType}
    enums = [arg for arg in args if isinstance(arg, type) and issubclass(arg, enum.StrEnum)]
    if len(enums) == 1 and args == {enums[0], str}:
        return enums[0]
    return None


def _enum_hook(tp: Any) -> Hook:
    cls = _enum_of(tp)
    assert cls is not None
    # A dict lookup instead of ``cls(value)``: the enum's own lookup is several times slower.
    members: dict[str, enum.StrEnum] = {member.value: member for member in cls}
    nullable = NoneType in get_args(tp)

    def structure_enum(value: Any, _: Any) -> Any:
        if value.__class__ is str:
            return members.get(value, value)
        if value is None and nullable:
            return None
        raise _wrong_type(value, "a string" + (" or null" if nullable else ""))

    return structure_enum


#: The documented statuses, for the lazy constructor's shortcut below.
_STATUSES: Final[dict[str, JobStatus]] = {status.value: status for status in JobStatus}


# -- nested models, outputs and inputs ---------------------------------------------------------


#: cattrs' generated function of each nested model without detailed validation: from a dict,
#: the model or an exception that does not say which field failed.
_FAST: dict[type[Any], Callable[[dict[str, Any]], Any]] = {}


def _nested_hook(cls: type[Any]) -> Hook:
    """cattrs' generated function for a nested model, refusing anything but a JSON object and
    naming the attribute a failure came from."""
    fast = _FAST[cls] = make_dict_structure_fn(cls, converter, _cattrs_detailed_validation=False)
    # Detailed validation wraps each field in its own handler, which costs a third more; it
    # runs only once the fast function has failed, to say which field it was.
    detailed = make_dict_structure_fn(cls, converter, _cattrs_detailed_validation=True)

    def structure_nested(value: Any, _: Any) -> Any:
        if value.__class__ is not dict:
            raise _wrong_type(value, f"an object ({cls.__name__})")
        try:
            return fast(value)
        except Exception:  # told apart by the detailed run below
            pass
        try:
            return detailed(value, cls)
        except ClassValidationError as group:
            with_notes, _ = group.group_exceptions()
            exc, note = with_notes[0]
            step = f".{note.name}"
            if isinstance(exc, BadValue):
                raise exc.inside(step) from group
            if isinstance(exc, KeyError):
                raise BadValue("required field missing", step) from group
            raise BadValue(repr(exc), step) from group

    return structure_nested


def _structure_output(value: Any, _: Any) -> JobIO | list[JobIO]:
    # Job.outputs: items are InputOutput or arrays of InputOutput (OpenAPI schema "Job").
    if value.__class__ is list:
        return cast(list[JobIO], _outputs_list(value, list[JobIO]))
    return cast(JobIO, _job_io(value, JobIO))


def _structure_input(value: Any, _: Any) -> Any:
    # The document types Job.inputs as any object. A value shaped as InputOutput (an object with
    # at least one of its properties, each of the documented type) is a JobIO; any other value
    # is kept as sent, so nothing the API sends is dropped or refused.
    if value.__class__ is dict and not value.keys().isdisjoint(INPUT_OUTPUT_KEYS):
        try:
            return _job_io_fast(value)
        except Exception:  # some property is of another type: not an InputOutput
            return value
    return value


# Factories first: a generated function takes its fields' hooks when it is made.
converter.register_structure_hook_factory(_is_id, lambda _: _structure_id)
converter.register_structure_hook_factory(_is_not_null, _not_null_hook)
converter.register_structure_hook_factory(_is_optional, _optional_hook)
converter.register_structure_hook_factory(lambda tp: _enum_of(tp) is not None, _enum_hook)
converter.register_structure_hook_factory(_is_list, _list_hook)
converter.register_structure_hook_factory(_is_dict, _dict_hook)
for _nested in (FunctionRef, JobIO, Restart, WorkerCounts, Webhook):
    converter.register_structure_hook(_nested, _nested_hook(_nested))
_job_io = converter.get_structure_hook(JobIO)
_job_io_fast = _FAST[JobIO]
_outputs_list = converter.get_structure_hook(list[JobIO])
converter.register_structure_hook(JobIO | list[JobIO], _structure_output)
converter.register_structure_hook(JobIO | Any, _structure_input)


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
        prefill = _is_id(field_types[key]) or field_types[key] is str
        # Likewise a job's status, which consumers filter on: a documented status string is
        # one lookup in the table its hook uses. Anything else is left to the hook.
        statuses = _STATUSES if "status" in field_types else {}

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


def _whole_constructor(cls: type[T]) -> Callable[[Any], T]:
    """cattrs' generated function typing every field of ``cls`` (``raw`` left empty); a failure
    raises whatever the failing hook raised, without saying which field it was."""
    return cast(
        Callable[[Any], T],
        make_dict_structure_fn(
            cls, converter, raw=override(omit=True), _cattrs_detailed_validation=False
        ),
    )


def _eager_constructor(cls: type[T]) -> Callable[[Any], T]:
    """cattrs' generated structuring function for ``cls``, with ``raw`` set to the source dict."""
    fast: Callable[[Any], T] = _WHOLE[cls]
    detailed = make_dict_structure_fn(
        cls, converter, raw=override(omit=True), _cattrs_detailed_validation=True
    )

    def structure_with_raw(value: Any) -> T:
        instance: T | None
        try:
            instance = fast(value)
        except Exception:  # told apart by the detailed run below
            instance = None
        try:
            if instance is None:
                instance = detailed(value, cls)
        except ClassValidationError as group:
            # The same message reading the first failing field lazily gives.
            with_notes, _ = group.group_exceptions()
            exc, note = with_notes[0]
            raise field_error(cls, note.name, value, exc) from exc
        object.__setattr__(instance, "raw", value)
        return instance

    return structure_with_raw


_LAZY: dict[type[Any], Callable[[Any], Any]] = {}
_WHOLE: dict[type[Any], Callable[[Any], Any]] = {}
_EAGER: dict[type[Any], Callable[[Any], Any]] = {}

use_hooks(converter.get_structure_hook, _WHOLE.__getitem__)
for _cls in IDENTITY:
    _LAZY[_cls] = _lazy_constructor(_cls)
    _WHOLE[_cls] = _whole_constructor(_cls)
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
    except SieveDecodeError:
        raise
    except Exception as exc:
        raise _structure_error(value, cls, exc) from exc


def _structure_error(value: Any, cls: type[Any], exc: Exception) -> SieveDecodeError:
    ident = value.get("id") if isinstance(value, dict) else None
    where = f" (id {ident!r})" if ident else ""
    return SieveDecodeError(
        f"could not read a {cls.__name__}{where} from the response: {exc!r}",
        body_start=excerpt(value),
    )
