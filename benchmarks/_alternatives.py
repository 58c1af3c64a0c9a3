"""The job model in pydantic v2 and msgspec, for the structuring and listing comparisons.

Both are built from one field table, shaped like `sieve_async.Job` (a job status is a plain
string here, and ``JobIO.schema`` is left out: it would shadow a pydantic ``BaseModel`` method).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import datetime
from typing import Any

#: A field: name, type, default (``REQUIRED`` for none).
Field = tuple[str, Any, Any]
REQUIRED = object()


def _tables(make: Callable[[str, list[Field]], Any], outputs_union: bool) -> Any:
    """Build FunctionRef, JobIO, Restart and Job with ``make(name, fields)``; return Job."""
    ref = make("FunctionRef", [("name", str, REQUIRED), ("owner_name", str, REQUIRED)])
    io = make(
        "JobIO",
        [
            ("type", str | None, None),
            ("name", str | None, None),
            ("data", Any, None),
            ("description", str | None, None),
            ("run_id", str | None, None),
            ("is_optional", bool | None, False),
        ],
    )
    restart = make(
        "Restart",
        [
            ("timestamp", datetime | None, None),
            ("reason", str | None, None),
            ("type", str | None, None),
            ("run_id", str | None, None),
        ],
    )
    # msgspec cannot mix a Struct and an array in one union; there the outputs stay untyped.
    output = (io | list[io]) if outputs_union else Any
    return make(
        "Job",
        [
            ("id", str, REQUIRED),
            ("function_id", str | None, None),
            ("organization_id", str | None, None),
            ("function", ref | None, None),
            ("status", str | None, None),
            ("created_at", datetime | None, None),
            ("started_at", datetime | None, None),
            ("completed_at", datetime | None, None),
            ("inputs", dict[str, io], {}),
            ("outputs", list[output], []),
            ("error", str | None, None),
            ("visibility", str | None, None),
            ("run_id", str | None, None),
            ("children", dict[str, list[Any]] | None, None),
            ("restarts", list[restart] | None, None),
        ],
    )


def _pydantic_job() -> Any:
    import pydantic

    def make(name: str, fields: list[Field]) -> Any:
        spec = {n: (t, ... if d is REQUIRED else d) for n, t, d in fields}
        return pydantic.create_model(name, **spec)

    return _tables(make, outputs_union=True)


def _msgspec_job() -> Any:
    import msgspec

    def make(name: str, fields: list[Field]) -> Any:
        return msgspec.defstruct(
            name, [(n, t) if d is REQUIRED else (n, t, d) for n, t, d in fields]
        )

    return _tables(make, outputs_union=False)


def _pydantic(raw: list[dict[str, Any]]) -> dict[str, Callable[[], object]]:
    validate = _pydantic_job().model_validate
    return {"pydantic v2 model_validate (eager)": lambda: [validate(item) for item in raw]}


def _msgspec(raw: list[dict[str, Any]], body: bytes) -> dict[str, Callable[[], object]]:
    import msgspec

    job = _msgspec_job()
    convert = msgspec.convert
    decoder = msgspec.json.Decoder(list[job])
    return {
        "msgspec convert from dicts (eager)": lambda: [convert(item, job) for item in raw],
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


def page_decoders() -> dict[str, Callable[[bytes], tuple[list[Any], int | None]]]:
    """For each installed alternative, a function from a listing's envelope body to its typed
    jobs and ``next_offset``, decoded as that library's users would: straight from the bytes."""
    decoders: dict[str, Callable[[bytes], tuple[list[Any], int | None]]] = {}
    if importlib.util.find_spec("msgspec") is not None:
        import msgspec

        envelope = msgspec.defstruct(
            "Envelope", [("data", list[_msgspec_job()]), ("next_offset", int | None, None)]
        )
        decode = msgspec.json.Decoder(envelope).decode

        def msgspec_page(body: bytes) -> tuple[list[Any], int | None]:
            page = decode(body)
            return page.data, page.next_offset

        decoders["msgspec"] = msgspec_page
    if importlib.util.find_spec("pydantic") is not None:
        import pydantic

        model = pydantic.create_model(
            "Envelope", data=(list[_pydantic_job()], ...), next_offset=(int | None, None)
        )
        validate = model.model_validate_json

        def pydantic_page(body: bytes) -> tuple[list[Any], int | None]:
            page = validate(body)
            return page.data, page.next_offset

        decoders["pydantic"] = pydantic_page
    return decoders
