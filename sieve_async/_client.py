"""`SieveClient`: configuration, the ``list_*`` methods and the fan-out over many functions."""

from __future__ import annotations

import os
import weakref
from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar, Unpack
from urllib.parse import quote

import anyio

from ._checkpoint import Checkpoint, listing_id, parse_checkpoint
from ._convert import structure_fn
from ._exceptions import SieveConfigError, SieveDecodeError, SievePaginationError
from ._fanout import FanOut, OnError
from ._http import Adapter, ClientSession, Sender
from ._models import Function, FunctionRef, FunctionVersion, Job, JobStatus
from ._options import ClientOptions, JobListingOptions, ListingOptions, PagingOptions
from ._paginator import AsyncPaginator
from ._paging import Cursor, RawPage, Window, decode_object, decode_page, function_key, id_key
from ._policy import check_base_url
from ._tasks import AsyncClosable, TaskRegistry
from ._transport import ClientStats, Transport
from ._validate import check_name, check_non_negative, check_positive, check_status
from ._window import WindowState, check_window

__all__ = ["DEFAULT_BASE_URL", "SieveClient"]

T = TypeVar("T")

DEFAULT_BASE_URL: Final = "https://mango.sievedata.com"
_MIB = 1 << 20


def _function_path(ref: FunctionRef, *rest: str) -> str:
    """``/v2/functions/{owner}/{name}/...``, each segment percent-encoded."""
    segments = (ref.owner_name, ref.name, *rest)
    return "/v2/functions/" + "/".join(quote(segment, safe="") for segment in segments)


def _decode(status: int, body: bytes) -> RawPage:
    return decode_page(body, status)


def _decode_object(status: int, body: bytes) -> dict[str, Any]:
    return decode_object(body, status)


def _outputs_of(raw: dict[str, Any], job_id: str, offset: int) -> list[Any]:
    """The ``outputs`` of one answer of ``GET /v2/jobs/{job_id}?offset=...``, checked."""
    if raw.get("id") != job_id:
        raise SieveDecodeError(
            f"GET /v2/jobs/{job_id}?offset={offset} answered with job {raw.get('id')!r}"
        )
    # The OpenAPI Job schema: outputs defaults to [] when absent.
    outputs = raw.get("outputs", [])
    if not isinstance(outputs, list):
        raise SieveDecodeError(
            f"GET /v2/jobs/{job_id}?offset={offset}: 'outputs' is {type(outputs).__name__}, "
            "not a list"
        )
    return outputs


def _check_fan_out_resume(
    resume: Mapping[str, Checkpoint | Literal["done"]] | None, ids: Mapping[FunctionRef, str]
) -> dict[FunctionRef, Checkpoint | Literal["done"]]:
    """Validate a fan-out's ``resume=`` against the listings of this call.

    Keys are ``"owner/name"`` strings, as `FanOut.checkpoints` writes them; each value is
    ``"done"`` or a checkpoint of that function's listing (see `parse_checkpoint`).
    """
    if resume is None:
        return {}
    if not isinstance(resume, Mapping):
        raise ValueError("resume= takes a fan-out's .checkpoints, a mapping by 'owner/name'")
    checked: dict[FunctionRef, Checkpoint | Literal["done"]] = {}
    for name, checkpoint in resume.items():
        if not isinstance(name, str):
            raise ValueError(f"resume= keys are 'owner/name' strings, got {name!r}")
        ref = FunctionRef.parse(name)
        if ref not in ids:
            raise ValueError(f"resume= names {name!r}, which is not among the functions listed")
        if not (isinstance(checkpoint, str) and checkpoint == "done"):
            try:
                parse_checkpoint(checkpoint, ids[ref])
            except ValueError as exc:
                raise ValueError(
                    f"resume= for {name!r} is neither 'done' nor a checkpoint of its listing: {exc}"
                ) from exc
        checked[ref] = checkpoint
    return checked


class SieveClient(AsyncClosable):
    """An async client for the Sieve API's listings.

    Args:
        api_key: the Sieve API key; defaults to the ``SIEVE_API_KEY`` environment variable.
        base_url: the API root; defaults to ``SIEVE_API_URL``, then ``https://mango.sievedata.com``.
        timeout: seconds one request attempt may take.
        max_retries: further attempts for a retryable failure (408, 429, 5xx, connection
            errors, timeouts, cut-short or non-JSON bodies).
        max_connections: requests in flight at once across everything this client runs.
        rate_limit: at most this many requests per second, or ``None``.
        session: an ``aiohttp.ClientSession`` to use; the client will not close it.
        allow_insecure_http: allow a plain ``http://`` base URL to a host that is not loopback.
        retry_wait_initial: first backoff in seconds (doubling, with jitter).
        retry_wait_max: the longest backoff between attempts.
        retry_after_max: the longest server ``Retry-After`` that is honoured as asked.
        max_response_bytes: the most bytes one response may take.
        transport: an object that answers requests instead of HTTP, such as
            `FakeSieve.transport() <sieve_async.testing.FakeSieve.transport>` for tests that
            need no sockets; it must have ``async send(request) -> response`` and
            ``async aclose()``. Timeouts, retries, bounds and the policy apply as with HTTP.

    Raises:
        SieveConfigError: no API key anywhere, a key with control characters, or a base URL
            we refuse.
        ValueError: a numeric option out of range.

    Use it as ``async with SieveClient() as sieve:``, or call `aclose` when done: closing cancels
    and awaits every background task it started.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_connections: int = 16,
        rate_limit: float | None = None,
        session: ClientSession | None = None,
        allow_insecure_http: bool = False,
        retry_wait_initial: float = 0.5,
        retry_wait_max: float = 30.0,
        retry_after_max: float = 120.0,
        max_response_bytes: int = 64 * _MIB,
        transport: Adapter | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("SIEVE_API_KEY")
        if not key or not key.strip():
            raise SieveConfigError(
                "no Sieve API key: set the SIEVE_API_KEY environment variable "
                "(in code, api_key= also works)"
            )
        key = key.strip()
        if not key.isprintable():
            # A line break in a header value would let the key's text write headers of its own.
            raise SieveConfigError(
                "the Sieve API key contains a control character (a line break, a tab, or another "
                "character that cannot go in a header); check SIEVE_API_KEY or the api_key argument"
            )
        options = ClientOptions.check(
            timeout=timeout,
            max_retries=max_retries,
            max_connections=max_connections,
            rate_limit=rate_limit,
            retry_wait_initial=retry_wait_initial,
            retry_wait_max=retry_wait_max,
            retry_after_max=retry_after_max,
            max_response_bytes=max_response_bytes,
        )
        if transport is not None and session is not None:
            raise ValueError("pass session= or transport=, not both")
        url = base_url or os.environ.get("SIEVE_API_URL") or DEFAULT_BASE_URL
        self._transport = Transport(
            api_key=key,
            base_url=check_base_url(url, allow_insecure_http=allow_insecure_http),
            options=options,
            session=session,
            adapter=transport,
        )
        self._tasks = TaskRegistry()
        self._open: weakref.WeakSet[AsyncPaginator[Any] | FanOut] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"SieveClient(base_url={str(self._transport.base_url)!r})"

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return str(self._transport.base_url)

    @property
    def max_connections(self) -> int:
        """The client-wide bound on requests in flight."""
        return self._transport.max_connections

    @property
    def stats(self) -> ClientStats:
        """Live counts of the requests sent, retries made and pages decoded by this client."""
        return self._transport.stats

    async def aclose(self) -> None:
        """Stop everything this client runs, then close its session (unless it was passed in)."""
        with anyio.CancelScope(shield=True):
            for resource in list(self._open):
                await resource.aclose()
            await self._tasks.aclose()
            await self._transport.aclose()

    # -- one job -----------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """One job, with every one of its outputs (``GET /v2/jobs/{job_id}``).

        The API may hand out a job's outputs a part at a time; this asks again with
        ``offset=`` (the outputs already in) until an answer brings no more, so a job with
        outputs takes one request more than the parts it comes in (a job without outputs, one
        request). The other fields are the first answer's.

        Raises:
            ValueError: ``job_id`` is blank, ``.`` or ``..``, or holds ``/``; before any request.
            SieveNotFoundError: no such job (or not visible to this key).
            SieveDecodeError: an answer that is not a job, or another job than asked.
            SievePaginationError: the server ignores ``offset``, sending the first outputs again.
        """
        path = "/v2/jobs/" + quote(check_name(job_id, "job id"), safe="")
        get = self._transport.get
        raw = await get(path, {}, _decode_object)
        outputs = _outputs_of(raw, job_id, 0)
        first = list(outputs)
        while first:
            more = await get(path, {"offset": str(len(outputs))}, _decode_object)
            part = _outputs_of(more, job_id, len(outputs))
            if not part:
                break
            if part == first:
                raise SievePaginationError(
                    f"GET {path}?offset={len(outputs)} sent the job's first outputs again: the "
                    "server ignores offset, so the job's outputs cannot all be read"
                )
            outputs.extend(part)
        return structure_fn(Job)({**raw, "outputs": outputs})

    # -- listings ----------------------------------------------------------------------------

    def list_function_jobs(
        self, owner: str, function: str, **options: Unpack[JobListingOptions]
    ) -> AsyncPaginator[Job]:
        """Jobs of one function, newest first (``GET /v2/functions/{owner}/{function}/jobs``).

        Args:
            owner: the function's owner (organisation) name.
            function: the function's name.
            **options: ``status``, ``since``, ``until``, ``page_size``, ``offset``,
                ``max_items``, ``read_ahead``, ``resume`` (see `JobListingOptions`).

        Raises:
            ValueError: an argument is out of range, a name is blank, ``.`` or ``..`` or holds
                ``/``, or ``resume`` is not a checkpoint of this listing (the message names the
                field at fault); raised here, before any request.
            TypeError: an option this method does not take.
        """
        path = _function_path(FunctionRef.parse((owner, function)), "jobs")
        return self._listing(path, Job, options, "list_function_jobs")

    def list_jobs(self, **options: Unpack[JobListingOptions]) -> AsyncPaginator[Job]:
        """Every job of the organisation, newest first (``GET /v2/jobs``).

        Takes the options of `list_function_jobs`.
        """
        return self._listing("/v2/jobs", Job, options, "list_jobs")

    def list_functions(self, **options: Unpack[ListingOptions]) -> AsyncPaginator[Function]:
        """The functions visible to this key (``GET /v2/functions``).

        Takes the options of `list_function_jobs`, except ``status``, ``since`` and ``until``.
        """
        return self._listing("/v2/functions", Function, options, "list_functions")

    def list_function_versions(
        self, owner: str, function: str, **options: Unpack[ListingOptions]
    ) -> AsyncPaginator[FunctionVersion]:
        """The versions of one function (``GET /v2/functions/{owner}/{function}/versions``).

        Takes the options of `list_function_jobs`, except ``status``, ``since`` and ``until``.
        """
        path = _function_path(FunctionRef.parse((owner, function)), "versions")
        return self._listing(path, FunctionVersion, options, "list_function_versions")

    def list_version_jobs(
        self, owner: str, function: str, version: str, **options: Unpack[JobListingOptions]
    ) -> AsyncPaginator[Job]:
        """Jobs of one version of a function, newest first.

        ``GET /v2/functions/{owner}/{function}/versions/{version}/jobs``; ``version`` is an id,
        an id prefix or ``latest``. Takes the options of `list_function_jobs`.
        """
        ref = FunctionRef.parse((owner, function))
        path = _function_path(ref, "versions", check_name(version, "version"), "jobs")
        return self._listing(path, Job, options, "list_version_jobs")

    def list_jobs_for_functions(
        self,
        functions: Iterable[str | tuple[str, str] | FunctionRef],
        *,
        concurrency: int = 8,
        status: JobStatus | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        max_items: int | None = None,
        page_size: int | None = None,
        on_error: OnError = "raise",
        buffer_size: int | None = None,
        resume: Mapping[str, Checkpoint | Literal["done"]] | None = None,
    ) -> FanOut:
        """Jobs of many functions at once, as ``(ref, job)`` pairs in arrival order.

        Args:
            functions: ``"owner/function"`` strings, ``(owner, function)`` pairs or `FunctionRef`.
            concurrency: requests in flight for this call at most (and never more than the
                client's ``max_connections``).
            status: only jobs in this status.
            since: only jobs created at or after this time (an aware ``datetime`` or an ISO
                string); each listing stops at its first older job (see `JobListingOptions`).
            until: only jobs created before this time.
            max_items: stop after this many jobs from all listings together.
            page_size: the new jobs to ask for per request (see `ListingOptions`).
            on_error: ``"raise"`` stops everything at the first failed listing and raises its
                error; ``"continue"`` finishes the others and records failures in ``.failures``.
            buffer_size: pages held between the producers and the consumer (default: 1);
                each open listing also holds the page it is handing over.
            resume: the ``checkpoints`` of an earlier call over the same functions and status:
                finished listings are skipped, the others continue after their last job
                delivered, with nothing lost or repeated.

        Raises:
            ValueError: an argument is malformed; raised here, before any request.
        """
        if isinstance(functions, str | FunctionRef):
            raise ValueError("functions must be a list of 'owner/function' names, not one name")
        refs: dict[FunctionRef, None] = {}
        for spec in functions:
            refs[FunctionRef.parse(spec)] = None
        check_positive(concurrency, "concurrency", allow_none=False)
        checked_status = check_status(status)
        window = check_window(since, until)
        check_non_negative(max_items, "max_items", allow_none=True)
        check_positive(page_size, "page_size")
        if on_error not in ("raise", "continue"):
            raise ValueError(f"on_error must be 'raise' or 'continue', got {on_error!r}")
        buffer = check_positive(buffer_size, "buffer_size") or 1
        ids = {ref: listing_id(_function_path(ref, "jobs"), checked_status) for ref in refs}
        resumed = _check_fan_out_resume(resume, ids)

        def listing(
            ref: FunctionRef, sender: Sender, checkpoint: Checkpoint | None
        ) -> AsyncPaginator[Job]:
            options = PagingOptions(
                status=checked_status, page_size=page_size, resume=checkpoint, window=window
            )
            return self._paginate(_function_path(ref, "jobs"), Job, options, via=sender)

        fan_out = FanOut(
            refs=list(refs),
            listing=listing,
            sender=self._transport.sender,
            concurrency=concurrency,
            on_error=on_error,
            buffer_size=buffer,
            tasks=self._tasks,
            listing_ids=ids,
            resume=resumed,
            max_items=max_items,
        )
        self._open.add(fan_out)
        return fan_out

    def _listing(
        self, path: str, cls: type[T], options: Mapping[str, Any], method: str
    ) -> AsyncPaginator[T]:
        checked = PagingOptions.check(options, method=method, jobs=cls is Job)
        return self._paginate(path, cls, checked)

    def _paginate(
        self,
        path: str,
        cls: type[T],
        options: PagingOptions,
        *,
        via: Sender | None = None,
    ) -> AsyncPaginator[T]:
        status = options.status
        listing = listing_id(path, status)
        offset, last, recent = options.offset, None, list[Hashable]()
        if options.resume is not None:
            offset, last, recent = parse_checkpoint(options.resume, listing)
        window = options.window
        cursor = Cursor(
            page_size=options.page_size,
            offset=offset,
            # A time window leaves items out after the cursor accepts them: the paginator
            # counts max_items then.
            max_items=options.max_items if window is None else None,
            key=function_key if cls is Function else id_key,
            last_key=last,
            recent=recent,
        )
        base_params = {} if status is None else {"status": status}
        transport = self._transport
        stats = transport.stats

        async def fetch(window: Window) -> RawPage:
            params = {**base_params, "offset": str(window.offset)}
            if window.limit is not None:
                params["limit"] = str(window.limit)
            page = await transport.get(path, params, _decode, via=via)
            stats.pages += 1
            return page

        paginator = AsyncPaginator(
            listing=listing,
            fetch=fetch,
            structure=structure_fn(cls),
            cursor=cursor,
            read_ahead=options.read_ahead,
            tasks=self._tasks,
            window=None if window is None else WindowState(window, listing),
            max_items=options.max_items,
        )
        if via is None and options.read_ahead:
            self._open.add(paginator)
        return paginator
