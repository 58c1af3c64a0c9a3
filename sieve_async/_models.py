"""The typed records of the Sieve API, as attrs classes.

The models follow the schemas of the Sieve OpenAPI document (``info.version`` 0.1.0): ``Job``,
``InputOutput``, ``CompactFunctionApp``, ``Restart``, ``FunctionApp``, ``Version``,
``WorkerCounts`` and ``WebhookModel``. A value is read as the JSON type the document gives its
field, never coerced into it: a value of another type is a `SieveDecodeError` naming the field.

Tolerance for what the live API sends beyond the document: a field the document requires may be
absent (its published example omits ``organization_id``; ``FunctionApp`` omits most fields when
truncated), and reads as ``None`` or its documented default. A field marked `MaybeAbsent` is one
the document never sends as null: ``None`` there means absent, and a null is refused. Fields the
models do not know are ignored (``raw`` keeps them); `sieve_async._convert` holds the rules.

The listing items (`Job`, `FunctionVersion`, `Function`) are marked `typed_on_first_read`: each
starts as its ``raw`` dict, and every other field is a descriptor that structures it from
``raw`` when first read and keeps the result in the instance ``__dict__`` (see
`sieve_async._lazy` for why and how).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Generic, TypeVar

import attrs

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint

from ._lazy import typed_on_first_read
from ._validate import check_name

T = TypeVar("T")


class FieldRule(enum.Enum):
    """How a field departs from its plain type (carried in ``Annotated`` metadata)."""

    #: The document never sends the field as null; ``None`` means the server left it out.
    NOT_NULL = "not null"
    #: A string id; an integer one (which listings accept) reads as its decimal text.
    ID = "id"


#: A ``T`` the document never sends as null: ``None`` only when the server left the field out.
MaybeAbsent = Annotated[T | None, FieldRule.NOT_NULL]
#: An item's ``id``: a string, or the decimal text of an integer id.
Id = Annotated[str, FieldRule.ID]

#: The schema properties of ``InputOutput``, the shape that makes a job input a `JobIO`.
INPUT_OUTPUT_KEYS: Final = frozenset(
    {"type", "name", "data", "description", "schema", "run_id", "is_optional"}
)


class JobStatus(enum.StrEnum):
    """The job statuses the API documents. A status outside this set stays a plain ``str``."""

    QUEUED = "queued"
    PROCESSING = "processing"
    ERROR = "error"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class RestartType(enum.StrEnum):
    """Why a job restarted (``Restart.type``). A value outside this set stays a plain ``str``."""

    PREEMPTION = "preemption"
    OOM = "OOM"
    ERROR = "error"


class FunctionType(enum.StrEnum):
    """A function or a workflow (``FunctionApp.function_type``); others stay a plain ``str``."""

    FUNCTION = "function"
    WORKFLOW = "workflow"


class WebhookType(enum.StrEnum):
    """The events a webhook fires on (``WebhookModel.type``); others stay a plain ``str``."""

    JOB_START = "job.start"
    JOB_COMPLETE = "job.complete"
    JOB_COMPLETE_NO_OUTPUT = "job.complete.no_output"
    JOB_NEW_OUTPUT = "job.new_output"
    #: The older spelling of ``job.start``, still in the document's enum.
    JOB_START_UNDERSCORED = "job_start"
    #: The older spelling of ``job.complete``, still in the document's enum.
    JOB_COMPLETE_UNDERSCORED = "job_complete"


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
    """One input or output of a job (``InputOutput``); ``data`` is any JSON value."""

    type: str | None = None
    name: str | None = None
    data: Any = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    run_id: str | None = None
    is_optional: bool | None = False


@attrs.frozen(kw_only=True)
class Restart:
    """A restart of a job: when, why (``reason`` in words, ``type`` a `RestartType`), which run."""

    timestamp: MaybeAbsent[datetime] = None
    reason: MaybeAbsent[str] = None
    type: MaybeAbsent[RestartType | str] = None
    run_id: str | None = None


@attrs.frozen(kw_only=True)
class WorkerCounts:
    """How many workers of a function version are in each state (``WorkerCounts``)."""

    starting: int | None = None
    setup: int | None = None
    active: int | None = None
    idle: int | None = None
    awaiting_resources: int | None = None


@attrs.frozen(kw_only=True)
class Webhook:
    """A webhook of a function (``WebhookModel``): the event it fires on and where it posts."""

    type: MaybeAbsent[WebhookType | str] = None
    url: MaybeAbsent[str] = None


@typed_on_first_read("id")
@attrs.frozen(kw_only=True, slots=False)
class Job:
    """A job of a Sieve function.

    Timestamps are timezone-aware UTC. ``status`` is a `JobStatus`, or the raw string for a
    status this version does not know. ``inputs`` maps each input's name to a `JobIO` where the
    value is an ``InputOutput`` object (a JSON object holding at least one of its properties,
    each of its documented type) and to the JSON value as sent otherwise: the document types
    the inputs as any object. ``outputs`` holds `JobIO` items or lists of them. ``restarts`` is
    ``[]`` when absent, as documented, and ``None`` only when the server sends null.
    ``raw`` is the object exactly as the server sent it, including fields not modelled here.
    """

    id: Id
    function_id: MaybeAbsent[str] = None
    organization_id: MaybeAbsent[str] = None
    function: FunctionRef | None = None
    status: MaybeAbsent[JobStatus | str] = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    inputs: dict[str, JobIO | Any] = attrs.field(factory=dict)
    outputs: list[JobIO | list[JobIO]] = attrs.field(factory=list)
    error: str | None = None
    visibility: MaybeAbsent[str] = None
    run_id: str | None = None
    children: dict[str, list[Any]] | None = None
    restarts: list[Restart] | None = attrs.field(factory=list)
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@typed_on_first_read("id")
@attrs.frozen(kw_only=True, slots=False)
class FunctionVersion:
    """A deployed version of a function (``Version`` in the OpenAPI document).

    ``environment_variables`` is the JSON value as sent: the document allows any value there.
    """

    id: Id
    build_status: MaybeAbsent[str] = None
    queued_at: datetime | None = None
    built_at: datetime | None = None
    ready_at: datetime | None = None
    compute_type: MaybeAbsent[str] = None
    python_packages: list[str] = attrs.field(factory=list)
    system_packages: list[str] = attrs.field(factory=list)
    cuda_version: str | None = None
    gpu: MaybeAbsent[bool] = None
    split: MaybeAbsent[int] = None
    minimum_replicas: MaybeAbsent[int] = 0
    maximum_replicas: int | None = 0
    inputs: list[JobIO] = attrs.field(factory=list)
    outputs: list[JobIO] = attrs.field(factory=list)
    current_workers: WorkerCounts | None = None
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
    function_type: FunctionType | str | None = None
    webhooks: list[Webhook] | None = None
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
