"""The time window of a job listing (``since=`` / ``until=``): checked once, applied page by page.

No I/O. The paginator applies it to the raw jobs of each page, the export to typed ones; both
through `select`, so the rule below lives here only.

A job listing is newest first, so the first job older than ``since`` ends what the window can
still find: the listing stops there. Once any job is newer than the one before it, that order
cannot be trusted, and every later page is filtered instead of stopping.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from ._convert import parse_timestamp

__all__ = ["CreatedWindow", "WindowState", "check_window", "created_at", "select"]

logger = logging.getLogger("sieve_async")


def _moment(value: Any, what: str) -> datetime | None:
    """``None``, or ``value`` (an aware datetime or an ISO 8601 string) as a UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{what} must be an ISO 8601 date or date-time such as 2025-06-01T12:00, "
                f"got {value!r}"
            ) from None
        # The API's timestamps are UTC; a time written without an offset means UTC too.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{what} must be a timezone-aware datetime (such as datetime(2025, 6, 1, "
                f"tzinfo=UTC)) or an ISO string, got the naive {value!r}"
            )
        return value.astimezone(UTC)
    raise ValueError(f"{what} must be a timezone-aware datetime or an ISO string, got {value!r}")


@attrs.frozen
class CreatedWindow:
    """Jobs created at or after ``since`` and before ``until`` (either may be open)."""

    since: datetime | None
    until: datetime | None


def check_window(since: Any, until: Any) -> CreatedWindow | None:
    """The window of ``since=`` and ``until=``, or ``None`` when neither is given.

    Raises:
        ValueError: a value that is not an aware datetime or an ISO string, or ``until`` not
            after ``since``.
    """
    start, end = _moment(since, "since"), _moment(until, "until")
    if start is None and end is None:
        return None
    if start is not None and end is not None and end <= start:
        raise ValueError(f"until= ({end.isoformat()}) must be after since= ({start.isoformat()})")
    return CreatedWindow(start, end)


def created_at(raw: Any) -> datetime | None:
    """The ``created_at`` of a job as the server sent it, as a UTC datetime (``None`` when it is
    missing or not a timestamp: such a job cannot be placed, so it is kept)."""
    value = raw.get("created_at") if isinstance(raw, dict) else None
    if not isinstance(value, str):
        return None
    try:
        # The models' reading, so that a listing and its typed jobs agree on every instant.
        return parse_timestamp(value)
    except ValueError:
        return None


def select(
    created: Sequence[datetime | None],
    window: CreatedWindow,
    previous: datetime | None,
    unordered: bool,
) -> tuple[list[int], bool, bool, datetime | None]:
    """Apply ``window`` to one page of a listing, given each job's ``created_at``.

    ``previous`` is the last timestamp seen in the listing before this page, and ``unordered``
    whether the listing was already found out of order.

    Returns:
        The indexes of the jobs to keep, whether the listing can stop after this page, whether
        it is out of order, and the last timestamp seen.
    """
    since, until = window.since, window.until
    keep: list[int] = []
    old = False
    for index, moment in enumerate(created):
        if moment is None:
            keep.append(index)
            continue
        if previous is not None and moment > previous:
            unordered = True
        previous = moment
        if since is not None and moment < since:
            old = True
        elif until is None or moment < until:
            keep.append(index)
    return keep, old and not unordered, unordered, previous


class WindowState:
    """`select` over the pages of one listing, in order, keeping what it learns between them."""

    __slots__ = ("_previous", "listing", "stopped", "unordered", "window")

    def __init__(self, window: CreatedWindow, listing: str) -> None:
        self.window = window
        self.listing = listing
        self.unordered = False
        #: The listing reached a job older than ``since`` while it was in order.
        self.stopped = False
        self._previous: datetime | None = None

    def keep(self, raws: Sequence[Any]) -> list[int]:
        """The indexes of the jobs of this page (raw dicts) that are in the window."""
        was_unordered = self.unordered
        keep, self.stopped, self.unordered, self._previous = select(
            [created_at(raw) for raw in raws], self.window, self._previous, self.unordered
        )
        if self.unordered and not was_unordered:
            logger.warning(
                "%s: jobs are not newest-first; reading the whole listing to apply since=",
                self.listing,
            )
        return keep
