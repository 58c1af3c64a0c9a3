"""The job model in pydantic v2 and msgspec, for the structuring comparison (when installed)."""

# No "from __future__ import annotations": both libraries read the annotations of classes
# defined inside functions, which postponed annotations would leave unresolvable.
import importlib.util
from collections.abc import Callable
from datetime import datetime
from typing import Any


def _pydantic(raw: list[dict[str, Any]]) -> dict[str, Callable[[], object]]:
    from pydantic import BaseModel

    class FunctionRef(BaseModel):
        name: str
        owner_name: str

    class JobIO(BaseModel):
        type: str | None = None
        name: str | None = None
        data: Any = None
        description: str | None = None
        schema_: dict[str, Any] | None = None
        run_id: str | None = None
        is_optional: bool | None = False

    class Restart(BaseModel):
        timestamp: datetime | None = None
        reason: str | None = None
        type: str | None = None
        run_id: str | None = None

    class Job(BaseModel):
        id: str
        function_id: str | None = None
        organization_id: str | None = None
        function: FunctionRef | None = None
        status: str | None = None
        created_at: datetime | None = None
        started_at: datetime | None = None
        completed_at: datetime | None = None
        inputs: dict[str, JobIO] = {}
        outputs: list[JobIO | list[JobIO]] = []
        error: str | None = None
        visibility: str | None = None
        run_id: str | None = None
        children: dict[str, list[Any]] | None = None
        restarts: list[Restart] | None = None

    validate = Job.model_validate
    return {"pydantic v2 model_validate (eager)": lambda: [validate(item) for item in raw]}


def _msgspec(raw: list[dict[str, Any]], body: bytes) -> dict[str, Callable[[], object]]:
    import msgspec

    class FunctionRef(msgspec.Struct):
        name: str
        owner_name: str

    class JobIO(msgspec.Struct):
        type: str | None = None
        name: str | None = None
        data: Any = None
        description: str | None = None
        run_id: str | None = None
        is_optional: bool | None = False

    class Restart(msgspec.Struct):
        timestamp: datetime | None = None
        reason: str | None = None
        type: str | None = None
        run_id: str | None = None

    class Job(msgspec.Struct):
        id: str
        function_id: str | None = None
        organization_id: str | None = None
        function: FunctionRef | None = None
        status: str | None = None
        created_at: datetime | None = None
        started_at: datetime | None = None
        completed_at: datetime | None = None
        inputs: dict[str, JobIO] = {}
        # msgspec cannot mix a Struct and an array in one union; outputs stay untyped.
        outputs: list[Any] = []
        error: str | None = None
        visibility: str | None = None
        run_id: str | None = None
        children: dict[str, list[Any]] | None = None
        restarts: list[Restart] | None = None

    convert = msgspec.convert
    decoder = msgspec.json.Decoder(list[Job])
    return {
        "msgspec convert from dicts (eager)": lambda: [convert(item, Job) for item in raw],
        "msgspec decode + type from bytes": lambda: decoder.decode(body),
    }


def alternatives(raw: list[dict[str, Any]], body: bytes) -> dict[str, Callable[[], object]]:
    """Benchmarks of the installed alternatives; none when neither is installed."""
    ways: dict[str, Callable[[], object]] = {}
    if importlib.util.find_spec("pydantic") is not None:
        ways.update(_pydantic(raw))
    if importlib.util.find_spec("msgspec") is not None:
        ways.update(_msgspec(raw, body))
    return ways
