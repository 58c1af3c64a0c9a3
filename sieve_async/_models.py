"""The typed records of the Sieve API, as attrs classes.

Field lists follow the schemas of the Sieve OpenAPI document (``Job``, ``InputOutput``,
``CompactFunctionApp``, ``Restart``, ``FunctionApp``, ``Version``). Every field but an item's
identity is optional, because the API omits fields ("Omitted if truncate enabled") and adds new
ones; `sieve_async._convert` ignores fields it does not know.

The listing items (`Job`, `FunctionVersion`, `Function`) are marked `typed_on_first_read`: each
starts as its ``raw`` dict, and every other field is a descriptor that structures it from
``raw`` when first read and keeps the result in the instance ``__dict__`` (see
`sieve_async._lazy` for why and how).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint

from ._lazy import typed_on_first_read
from ._validate import check_name

T = TypeVar("T")


class JobStatus(enum.StrEnum):
    """The job statuses the API documents. A status outside this set stays a plain ``str``."""

    QUEUED = "queued"
    PROCESSING = "processing"
    ERROR = "error"
    FINISHED = "finished"
    CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class FunctionRef:
    """A function's name and owner (``CompactFunctionApp``); ``str()`` gives ``owner/name``."""

    name: str
    owner_name: str

    def __str__(self) -> str:
        return f"{self.owner_name}/{self.name}"

    @classmethod
    def parse(cls, spec: str | tuple[str, str] | FunctionRef) -> FunctionRef:
        """Read ``"owner/function"``, ``(owner, function)`` or a `FunctionRef`.

        Raises:
            ValueError: the owner or the name is not a string, is blank, ``.`` or ``..``, or
                contains ``/``.
        """
        if isinstance(spec, FunctionRef):
            owner, name = spec.owner_name, spec.name
        elif isinstance(spec, str):
            owner, sep, name = spec.partition("/")
            if not sep:
                raise ValueError(f"expected 'owner/function', got {spec!r}")
        elif isinstance(spec, tuple) and len(spec) == 2:
            owner, name = spec
        else:
            raise ValueError(f"expected 'owner/function' or (owner, function), got {spec!r}")
        owner = check_name(owner, "owner")
        return cls(name=check_name(name, "function"), owner_name=owner)


@attrs.frozen(kw_only=True)
class JobIO:
    """One input or output of a job (``InputOutput``); ``data`` is what the function made."""

    type: str | None = None
    name: str | None = None
    data: Any = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    run_id: str | None = None
    is_optional: bool | None = False


@attrs.frozen(kw_only=True)
class Restart:
    """A restart of a job: when, why (``preemption``, ``OOM``, ``error``) and which run."""

    timestamp: datetime | None = None
    reason: str | None = None
    type: str | None = None
    run_id: str | None = None


@typed_on_first_read("id")
@attrs.frozen(kw_only=True, slots=False)
class Job:
    """A job of a Sieve function.

    Timestamps are timezone-aware UTC. ``status`` is a `JobStatus`, or the raw string for a
    status this version does not know. ``outputs`` holds `JobIO` items or lists of them.
    ``raw`` is the object exactly as the server sent it, including fields not modelled here.
    """

    id: str
    function_id: str | None = None
    organization_id: str | None = None
    function: FunctionRef | None = None
    status: JobStatus | str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    inputs: dict[str, JobIO] = attrs.field(factory=dict)
    outputs: list[JobIO | list[JobIO]] = attrs.field(factory=list)
    error: str | None = None
    visibility: str | None = None
    run_id: str | None = None
    children: dict[str, list[Any]] | None = None
    restarts: list[Restart] | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@typed_on_first_read("id")
@attrs.frozen(kw_only=True, slots=False)
class FunctionVersion:
    """A deployed version of a function (``Version`` in the OpenAPI document)."""

    id: str
    build_status: str | None = None
    queued_at: datetime | None = None
    built_at: datetime | None = None
    ready_at: datetime | None = None
    compute_type: str | None = None
    python_packages: list[str] = attrs.field(factory=list)
    system_packages: list[str] = attrs.field(factory=list)
    cuda_version: str | None = None
    gpu: bool | None = None
    split: int | None = None
    minimum_replicas: int | None = 0
    maximum_replicas: int | None = 0
    inputs: list[JobIO] = attrs.field(factory=list)
    outputs: list[JobIO] = attrs.field(factory=list)
    current_workers: dict[str, Any] | None = None
    environment_variables: Any = None
    stream_output: bool | None = False
    function_dependencies: list[str] = attrs.field(factory=list)
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@typed_on_first_read("owner_name", "name")
@attrs.frozen(kw_only=True, slots=False)
class Function:
    """A Sieve function (``FunctionApp``); most fields are absent when the API truncates."""

    name: str
    owner_name: str
    visibility: str | None = None
    title: str | None = None
    code_url: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    cover_image_url: str | None = None
    examples: list[str] | None = None
    readme: str | None = None
    latest_version: FunctionVersion | None = None
    function_type: str | None = None
    webhooks: list[dict[str, Any]] | None = None
    restart_on_error: bool | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def ref(self) -> FunctionRef:
        """This function's `FunctionRef`."""
        return FunctionRef(name=self.name, owner_name=self.owner_name)


@attrs.frozen(kw_only=True)
class Page(Generic[T]):
    """One page of a listing.

    Attributes:
        items: the new items of this page, typed, in server order.
        offset: the offset this page was requested at.
        next_offset: where the listing continues, or ``None`` after the last page.
    """

    items: list[T]
    offset: int
    next_offset: int | None
    _checkpoints: Callable[[int], Checkpoint] | None = attrs.field(
        default=None, repr=False, eq=False, alias="checkpoints"
    )

    def checkpoint_after(self, count: int) -> Checkpoint:
        """The listing's checkpoint once the first ``count`` items of this page are delivered.

        ``checkpoint_after(len(page.items))`` is where the listing stands after the whole page;
        pass it as ``resume=`` to continue after it.

        Raises:
            ValueError: ``count`` is not between 0 and the number of items, or the page was
                not made by a paginator.
        """
        if self._checkpoints is None:
            raise ValueError("this page was not made by a paginator: it has no checkpoints")
        whole = len(self.items)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= whole:
            raise ValueError(f"count must be between 0 and {len(self.items)}, got {count!r}")
        return self._checkpoints(count)
