"""Options checked in one place before any request: the client's transport settings, and the
keyword options every ``list_*`` method takes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import attrs

from ._checkpoint import Checkpoint
from ._models import JobStatus
from ._validate import check_non_negative, check_number, check_positive, check_status
from ._window import CreatedWindow, check_window


class ListingOptions(TypedDict, total=False):
    """The keyword options of every ``list_*`` method.

    Keys:
        page_size: the new items to ask for per request (the ``limit``; every request after
            the first asks for one more, the last item delivered, which keeps delivery exactly
            once); the server may cap it lower.
        offset: skip this many items first.
        max_items: stop after this many items.
        read_ahead: fetch up to this many further pages while the current one is consumed.
        resume: a ``checkpoint`` of an earlier paginator over the same listing.
    """

    page_size: int | None
    offset: int
    max_items: int | None
    read_ahead: int
    resume: Checkpoint | None


class JobListingOptions(ListingOptions, total=False):
    """The options of the job listings: those of `ListingOptions`, ``status``, ``since`` and
    ``until``.

    Keys:
        status: only jobs in this status (``queued``, ``processing``, ``error``, ``finished``,
            ``cancelled``).
        since: only jobs created at or after this time: a timezone-aware ``datetime`` or an ISO
            8601 string (UTC when it has no offset). The listing, newest first, stops at its
            first older job; if it turns out not to be newest-first, it is read to its end and
            filtered, with one warning.
        until: only jobs created before this time (same forms as ``since``).
    """

    status: JobStatus | str | None
    since: datetime | str | None
    until: datetime | str | None


_NAMES = frozenset(JobListingOptions.__annotations__) | frozenset(ListingOptions.__annotations__)
#: The options only the job listings take.
_JOB_NAMES = frozenset(JobListingOptions.__annotations__) - frozenset(
    ListingOptions.__annotations__
)


@attrs.frozen(kw_only=True)
class PagingOptions:
    """`ListingOptions` once checked: what one paginator is built from."""

    status: str | None = None
    page_size: int | None = None
    offset: int = 0
    max_items: int | None = None
    read_ahead: int = 0
    resume: Checkpoint | None = None
    window: CreatedWindow | None = None

    @classmethod
    def check(cls, options: Mapping[str, Any], *, method: str, jobs: bool) -> PagingOptions:
        """Check the options passed to ``method``; ``jobs`` says whether it takes the options
        of the job listings (``status``, ``since``, ``until``).

        Raises:
            TypeError: an option this method does not take, as Python says of any call.
            ValueError: an option out of range, naming it.
        """
        for name in options:
            if name not in _NAMES or (name in _JOB_NAMES and not jobs):
                raise TypeError(f"{method}() got an unexpected keyword argument {name!r}")
        checked = cls(
            status=check_status(options.get("status")),
            page_size=check_positive(options.get("page_size"), "page_size"),
            offset=check_non_negative(options.get("offset", 0), "offset"),
            max_items=check_non_negative(options.get("max_items"), "max_items", allow_none=True),
            read_ahead=check_non_negative(options.get("read_ahead", 0), "read_ahead"),
            resume=options.get("resume"),
            window=check_window(options.get("since"), options.get("until")),
        )
        if checked.resume is not None and checked.offset:
            raise ValueError("pass either offset= or resume=, not both")
        return checked


@attrs.frozen(kw_only=True)
class ClientOptions:
    """How the client sends requests; `SieveClient` documents each setting.

    Made by `check`, which refuses a value out of range with a ``ValueError`` naming it.
    """

    timeout: float
    max_retries: int
    max_connections: int
    rate_limit: float | None
    retry_wait_initial: float
    retry_wait_max: float
    retry_after_max: float
    max_response_bytes: int

    @classmethod
    def check(
        cls,
        *,
        timeout: Any,
        max_retries: Any,
        max_connections: Any,
        rate_limit: Any,
        retry_wait_initial: Any,
        retry_wait_max: Any,
        retry_after_max: Any,
        max_response_bytes: Any,
    ) -> ClientOptions:
        """Check each setting; raise ``ValueError`` naming the first one out of range."""
        if rate_limit is not None:
            try:
                rate_limit = check_number(rate_limit, "rate_limit", positive=True)
            except ValueError:
                raise ValueError(
                    f"rate_limit must be a positive number or None, got {rate_limit!r}"
                ) from None
        return cls(
            timeout=check_number(timeout, "timeout", positive=True),
            max_retries=check_non_negative(max_retries, "max_retries"),
            max_connections=check_positive(max_connections, "max_connections", allow_none=False),
            rate_limit=rate_limit,
            retry_wait_initial=check_number(retry_wait_initial, "retry_wait_initial"),
            retry_wait_max=check_number(retry_wait_max, "retry_wait_max"),
            retry_after_max=check_number(retry_after_max, "retry_after_max"),
            max_response_bytes=check_positive(
                max_response_bytes, "max_response_bytes", allow_none=False
            ),
        )
