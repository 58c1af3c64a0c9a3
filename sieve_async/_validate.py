"""Argument checks shared by every public entry point; all raise ``ValueError`` before any I/O."""

from __future__ import annotations

from typing import Any, Literal, overload

__all__ = [
    "STATUSES",
    "check_name",
    "check_non_negative",
    "check_number",
    "check_positive",
    "check_status",
]

#: The statuses the API filters on (``JobStatus`` holds the same values).
STATUSES = ("queued", "processing", "error", "finished", "cancelled")


#: Names that are path segments of their own: RFC 3986 §5.2.4 removes them, and so do proxies
#: that normalise paths, so ``versions/..`` would reach another listing.
_DOT_SEGMENTS = (".", "..")


def check_name(value: Any, what: str) -> str:
    """One path segment: a string that is not blank, ``.`` or ``..``, and holds no ``/``.

    Anything else is a name: the caller percent-encodes it as a single segment.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} name must be a string, got {value!r}")
    if not value.strip():
        raise ValueError(f"{what} name must not be empty, got {value!r}")
    if value in _DOT_SEGMENTS:
        raise ValueError(f"{what} name must not be '.' or '..', got {value!r}")
    if "/" in value:
        raise ValueError(f"{what} name must not contain '/', got {value!r}")
    return value


def check_status(value: Any) -> str | None:
    """``None`` or one of the statuses the API filters on."""
    if value is None:
        return None
    text = getattr(value, "value", value)
    if text not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {value!r}")
    return str(text)


@overload
def check_positive(value: Any, what: str, *, allow_none: Literal[False]) -> int: ...
@overload
def check_positive(value: Any, what: str, *, allow_none: bool = True) -> int | None: ...
def check_positive(value: Any, what: str, *, allow_none: bool = True) -> int | None:
    """``None`` (where allowed) or an integer of at least 1."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


@overload
def check_non_negative(value: Any, what: str, *, allow_none: Literal[False] = False) -> int: ...
@overload
def check_non_negative(value: Any, what: str, *, allow_none: bool) -> int | None: ...
def check_non_negative(value: Any, what: str, *, allow_none: bool = False) -> int | None:
    """An integer of at least 0 (or ``None`` where allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def check_number(value: Any, what: str, *, positive: bool = False) -> float:
    """A real number (not a bool) of at least 0, or above 0 where ``positive``; as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{what} must be a non-negative number, got {value!r}")
    if positive and value == 0:
        raise ValueError(f"{what} must be positive")
    return float(value)
