"""Fields typed on first read: the descriptor the listing models declare, and what it needs.

Structuring a whole job costs several times more than decoding its JSON, and most consumers
read a few fields of each job. So a listed item starts as its ``raw`` dict alone, and each field
is structured from ``raw`` when it is first read, then kept in the instance ``__dict__``.

How: a model marked `typed_on_first_read` is an attrs class without slots whose fields (all but
``raw``) are non-data descriptors (`LazyField`). Python looks in the instance ``__dict__`` before
it calls a non-data descriptor, so a field that is set — by attrs' ``__init__``, or by the
descriptor's first run — reads at plain attribute speed, and an unset one costs one call. (With
slots, every read would go through a Python-level descriptor and the first read of each field
would raise and catch an ``AttributeError`` inside it, which measured about twice as slow for a
consumer reading ``id`` and ``status``.)

A field holding lists, objects or nested models is different: whoever reads one (an exporter,
an ORM loader, ``attrs.asdict``) nearly always reads the others too, and one descriptor call
per field costs as much as typing it. So the first read of such a field types every field not
yet set, in one call of cattrs' generated function for the whole model. Should any field be
malformed, that pass is dropped and the field read is typed alone, so that each field's error
surfaces when that field is read, and the other fields still read.

The values come from the one cattrs converter of `sieve_async._convert`, which hands this module
its hook lookup and its whole-model functions (`use_hooks`) when it is imported; the models do
not import cattrs. The test suite checks, property-wise, that every field read this way equals
cattrs' eager result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar, get_args, get_origin

import attrs

from ._exceptions import SieveDecodeError, excerpt

T = TypeVar("T")

Hook = Callable[[Any, Any], Any]

#: Each model typed on first read, with the keys that identify one of its items (attrs fields
#: without a default, so an item lacking one is refused when it arrives, not when it is read).
IDENTITY: Final[dict[type[Any], tuple[str, ...]]] = {}

#: Structures every field of a model from its raw dict into a new instance, or raises.
Whole = Callable[[dict[str, Any]], Any]

_hook_for: list[Callable[[Any], Hook]] = []
_whole_for: list[Callable[[type[Any]], Whole]] = []


class BadValue(ValueError):
    """A value a field's hook refuses: of another JSON type than documented, or unreadable.

    ``path`` says where inside the field (``[0].type``); the hooks of lists, objects and nested
    models extend it as the error passes through them.
    """

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(f"{path.lstrip('.')}: {problem}" if path else problem)
        self.problem = problem
        self.path = path

    def inside(self, step: str) -> BadValue:
        """The same error, one step further out (``step`` is ``[3]`` or ``.name``)."""
        return BadValue(self.problem, step + self.path)


def use_hooks(lookup: Callable[[Any], Hook], whole: Callable[[type[Any]], Whole]) -> None:
    """Take the structuring hook of each field type from ``lookup`` (the converter's), and the
    function typing a whole model from ``whole``."""
    _hook_for[:] = [lookup]
    _whole_for[:] = [whole]


def _composite(tp: Any) -> bool:
    """Whether values of ``tp`` may hold lists, objects or attrs models."""
    if get_origin(tp) in (list, dict) or (isinstance(tp, type) and attrs.has(tp)):
        return True
    return any(_composite(arg) for arg in get_args(tp))


def identity(cls: type[Any], raw: dict[str, Any]) -> str:
    """The identifying keys of an item of ``cls``, joined with ``/``, for messages."""
    return "/".join(str(raw.get(key)) for key in IDENTITY[cls])


def typed_on_first_read(*keys: str) -> Callable[[type[T]], type[T]]:
    """Mark an attrs model (without slots) as typed field by field from ``raw`` on first read.

    ``keys`` identify an item; they are checked when it arrives.
    """

    def install(cls: type[T]) -> type[T]:
        if "__slots__" in cls.__dict__:  # pragma: no cover - a model mistake
            raise TypeError(f"{cls.__name__} must be an attrs class without slots")
        IDENTITY[cls] = keys
        model: Any = cls
        # The models use postponed annotations; the hooks are looked up by the real types.
        attrs.resolve_types(model)
        for field in attrs.fields(model):
            if field.name != "raw":
                setattr(cls, field.name, LazyField(cls, field))
        return cls

    return install


class LazyField:
    """One field of a model typed on first read: structured from ``raw``, then kept.

    A non-data descriptor, so once the instance ``__dict__`` holds the field, Python never calls
    it again. Two threads reading the same unset field may both structure it; either result is
    kept and both are equal.
    """

    __slots__ = ("_cls", "_composite", "_default", "_factory", "_hook", "_name", "_type", "_whole")

    def __init__(self, cls: type[Any], field: attrs.Attribute[Any]) -> None:
        self._cls = cls
        self._name = field.name
        self._type = field.type
        self._hook: Hook | None = None
        self._composite = _composite(field.type)
        self._whole: Whole | None = None
        default: Any = field.default
        self._factory: Callable[[], Any] | None = None
        self._default = default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            self._factory = default.factory
        elif default is attrs.NOTHING:
            self._factory = self._missing

    def __repr__(self) -> str:
        return f"<lazy field {self._cls.__name__}.{self._name}: {self._type}>"

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        fields = instance.__dict__
        if self._composite and self._type_all(fields):
            return fields[self._name]
        raw = fields["raw"]
        name = self._name
        if name in raw:
            # Resolved at first use rather than at import, so hooks registered later count.
            hook = self._hook or self._resolve()
            try:
                value = hook(raw[name], self._type)
            except Exception as exc:
                raise self._error(raw, exc) from exc
        elif self._factory is not None:
            value = self._factory()
        else:
            value = self._default
        fields[name] = value
        return value

    def _resolve(self) -> Hook:
        self._hook = _hook_for[0](self._type)
        return self._hook

    def _type_all(self, fields: dict[str, Any]) -> bool:
        """Set every field not yet set in ``fields`` (an instance's); False if one is malformed."""
        whole = self._whole
        if whole is None:
            whole = self._whole = _whole_for[0](self._cls)
        try:
            values: dict[str, Any] = whole(fields["raw"]).__dict__
        except Exception:
            return False
        # What is already set stays: ``raw``, and values a caller may hold.
        values.update(fields)
        fields.update(values)
        return True

    def _missing(self) -> Any:
        raise SieveDecodeError(f"a {self._cls.__name__} lacks its required field {self._name!r}")

    def _error(self, raw: dict[str, Any], exc: Exception) -> SieveDecodeError:
        return field_error(self._cls, self._name, raw, exc)


def field_error(
    cls: type[Any], name: str, raw: dict[str, Any], exc: BaseException
) -> SieveDecodeError:
    """The error for field ``name`` of the ``cls`` item ``raw``, which its hook refused."""
    value = raw.get(name)
    where = f"field {name!r} of {cls.__name__} {identity(cls, raw)!r}"
    if isinstance(exc, BadValue):
        inside = f" at {name}{exc.path}" if exc.path else ""
        message = f"could not read {where}{inside}: {exc.problem}"
    elif isinstance(exc, KeyError):
        message = f"could not read {where}: it is missing"
    else:
        shown = excerpt(value).decode(errors="replace")
        message = f"could not read {where} from {shown}: {exc!r}"
    return SieveDecodeError(message, body_start=excerpt(value))
