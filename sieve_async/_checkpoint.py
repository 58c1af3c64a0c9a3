"""Checkpoints, and the one record of what a listing has delivered.

A checkpoint is the JSON form of `Delivered`: the listing's identity, the position after the last
item handed out, that item's id, and a few ids before it (so a resumed cursor can find its place
even when the very last one has left the listing). The paginator keeps one `Delivered` for its
consumer; the fan-out keeps one per listing, from the pages it hands out; both build them the
same way, through `Delivered.after`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypedDict, cast

import attrs

from ._paging import is_id

__all__ = [
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "Delivered",
    "listing_id",
    "make_checkpoint",
    "parse_checkpoint",
]


class Checkpoint(TypedDict):
    """Where a listing stands: resume it after ``last_id``, found at or after ``offset``.

    JSON-serialisable as it is; `parse_checkpoint` checks one field by field.
    """

    version: int
    listing: str
    offset: int
    last_id: str | int | None
    recent: list[str | int]


CHECKPOINT_VERSION = 1
#: Recently delivered ids a checkpoint carries, so a resumed cursor can re-anchor even when the
#: very last delivered job has since left the listing.
RECENT = 8


def listing_id(path: str, status: str | None) -> str:
    """The identity a checkpoint is bound to: the listing's path and its status filter."""
    return path if status is None else f"{path}?status={status}"


def make_checkpoint(
    listing: str, position: int, last: Hashable | None, recent: list[Hashable]
) -> Checkpoint:
    """A JSON-serialisable checkpoint: resume ``listing`` after ``last``, at ``position``."""
    # Keys come from `is_id`-checked ids (str or int); Hashable is the paging core's wider type.
    return {
        "version": CHECKPOINT_VERSION,
        "listing": listing,
        "offset": position,
        "last_id": cast(str | int | None, last),
        "recent": [cast(str | int, k) for k in recent if k != last],
    }


#: The fields of a checkpoint, as `make_checkpoint` writes them.
_CHECKPOINT_FIELDS = ("version", "listing", "offset", "last_id", "recent")


def parse_checkpoint(value: Any, listing: str) -> tuple[int, Hashable | None, list[Hashable]]:
    """Validate a checkpoint for ``listing``; return its offset, last id and recent ids.

    A checkpoint is the dict `make_checkpoint` writes, checked field by field: ``version``
    (this format's number), ``listing`` (this listing's identity), ``offset`` (an integer of at
    least 0), ``last_id`` (an id, or ``None`` before anything was delivered) and ``recent`` (a
    list of ids). Ids are strings or integers. Every field is required, and a field not among
    these is refused: this format has no optional fields, so an unknown one means the dict
    was written by something else or edited, and resuming from it could lose or repeat items.

    Raises:
        ValueError: it is not a checkpoint (naming the field at fault), or it belongs to another
            listing.
    """
    _check_form(value)
    if value["listing"] != listing:
        raise ValueError(
            f"checkpoint 'listing': it belongs to listing {value['listing']!r}, not {listing!r}"
        )
    offset = value["offset"]
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"checkpoint 'offset' must be a non-negative integer, got {offset!r}")
    last = value["last_id"]
    if last is not None and not is_id(last):
        raise ValueError(
            f"checkpoint 'last_id' must be a string or an integer (or null), got {last!r}"
        )
    recent = value["recent"]
    if not isinstance(recent, list) or not all(map(is_id, recent)):
        raise ValueError(
            f"checkpoint 'recent' must be a list of ids (strings or integers), got {recent!r}"
        )
    return offset, last, list(recent)


def _check_form(value: Any) -> None:
    """A dict of this format's version with exactly its fields, or ``ValueError`` saying why."""
    if not isinstance(value, dict):
        raise ValueError(f"resume= takes a paginator's .checkpoint, got {value!r}")
    if "version" not in value:
        raise ValueError("checkpoint 'version' is missing: resume= takes a paginator's .checkpoint")
    version = value["version"]
    if type(version) is not int or version != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint 'version' is {version!r}; this version of sieve_async reads "
            f"checkpoints of version {CHECKPOINT_VERSION}"
        )
    missing = [field for field in _CHECKPOINT_FIELDS if field not in value]
    if missing:
        raise ValueError(f"checkpoint {missing[0]!r} is missing")
    unknown = [field for field in value if field not in _CHECKPOINT_FIELDS]
    if unknown:
        raise ValueError(f"checkpoint field {unknown[0]!r} is not a checkpoint field")


@attrs.frozen
class Delivered:
    """What of one listing has been handed out: the position after the last item, its id, and
    the ids just before it (at most `RECENT` in all)."""

    listing: str
    position: int
    last: Hashable | None = None
    recent: tuple[Hashable, ...] = ()

    def after(self, keys: Sequence[Hashable], positions: Sequence[int], count: int) -> Delivered:
        """This state once the first ``count`` items of a page (``keys``, ``positions``) are
        handed out."""
        if not count:
            return self
        recent = (*self.recent, *keys[max(0, count - RECENT) : count])[-RECENT:]
        return Delivered(self.listing, positions[count - 1], keys[count - 1], recent)

    def checkpoint(self) -> Checkpoint:
        """The JSON-serialisable checkpoint of this state, for ``resume=``."""
        return make_checkpoint(self.listing, self.position, self.last, list(self.recent))

    @classmethod
    def resumed(cls, listing: str, checkpoint: Any) -> Delivered:
        """The state a valid checkpoint of ``listing`` describes (see `parse_checkpoint`)."""
        position, last, recent = parse_checkpoint(checkpoint, listing)
        return cls(listing, position, last, tuple(recent))
