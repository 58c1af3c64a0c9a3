"""Payloads generated from the Sieve OpenAPI document, served over HTTP, read through the API.

For each of the five listings, in both shapes (an envelope and a bare array), hypothesis-jsonschema
draws items from the schema the document gives that listing's response; a small aiohttp.web
server (`serve_payloads`) sends them, and the public client reads them. The properties:

- every valid payload reads without error: every field of every item, nested ones included (a
  date-time Python cannot hold, such as year 1 with a positive offset, is the one documented
  exception: reading it is a `SieveDecodeError` saying so);
- ``raw`` is the item exactly as sent: the same JSON text, every digit and type;
- each typed value matches the payload, checked against the document's own schema.

Values come from hypothesis-jsonschema. Objects are assembled from their ``properties`` here
(required ones always, others at random, plus one field the document does not name), as its
own object generation costs about 0.2 s per job. Where the document allows any JSON value
(``{}``, a bare ``"type": "object"``), a bounded subset is drawn, and ``Job.inputs`` values are
``InputOutput`` objects or any JSON value.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints

import attrs
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from sieve_async import Job, JobIO, SieveClient, SieveDecodeError

pytestmark = pytest.mark.anyio

DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "sieve-openapi.json").read_text()
)
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]

SCALAR = {
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "string", "maxLength": 8},
    ]
}
ANY_OBJECT = {"type": "object", "additionalProperties": SCALAR, "maxProperties": 3}
#: A bounded part of "any JSON value", for the places the document leaves open.
ANY_JSON = {"anyOf": [SCALAR, {"type": "array", "items": SCALAR, "maxItems": 3}, ANY_OBJECT]}


@functools.cache
def hints_of(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


@functools.cache
def _leaf(text: str) -> st.SearchStrategy[Any]:
    return from_schema(json.loads(text))


def leaf(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """hypothesis-jsonschema's strategy for ``schema``, made once per distinct schema."""
    return _leaf(json.dumps(schema, sort_keys=True))


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _value_keywords(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("title", "description", "examples")}


def drawn(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid against ``schema`` (a schema of the document)."""
    schema = resolve(schema)
    if "anyOf" in schema:
        return st.one_of([drawn(branch) for branch in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return objects(schema)
    if kind == "object" and schema.get("title") == "Inputs":
        # Job.inputs: any object; its values are most useful as InputOutput or any JSON value.
        inputs = drawn({"$ref": "#/components/schemas/InputOutput"}) | leaf(ANY_JSON)
        return st.dictionaries(st.text(max_size=6), inputs, max_size=3)
    if kind == "array":
        return st.lists(drawn(schema.get("items", {})), max_size=2)
    if _value_keywords(schema) == {"type": "object"}:
        return leaf(ANY_OBJECT)
    if not _value_keywords(schema):
        return leaf(ANY_JSON)
    return leaf(_value_keywords(schema))


def objects(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema["properties"]
    required = set(schema.get("required", ()))
    known = st.fixed_dictionaries(
        {name: drawn(sub) for name, sub in properties.items() if name in required},
        optional={name: drawn(sub) for name, sub in properties.items() if name not in required},
    )
    unknown = st.dictionaries(
        st.text(max_size=6).filter(lambda key: key not in properties),
        leaf(SCALAR),
        max_size=1,
    )
    return st.builds(lambda k, u: {**u, **k}, known, unknown)


def item_schema(path: str) -> dict[str, Any]:
    """The schema of one item of the listing at ``path``, from its 200 response."""
    response = DOCUMENT["paths"][path]["get"]["responses"]["200"]
    body = resolve(response["content"]["application/json"]["schema"])
    if body.get("type") == "array":
        return resolve(body["items"])
    return resolve(body["properties"]["data"]["items"])


# -- what a typed value must be, by the document -----------------------------------------------


def instant(text: str) -> datetime | None:
    """The UTC instant of an RFC 3339 string, or None where Python's datetime cannot hold it."""
    try:
        moment = datetime.fromisoformat(text.upper())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def valid(value: Any, schema: dict[str, Any]) -> bool:
    document = {**schema, "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(document).is_valid(value)


def check(typed: Any, sent: Any, schema: dict[str, Any], where: str) -> None:
    """``typed`` is what the document says ``sent`` is, under ``schema``."""
    schema = resolve(schema)
    if "anyOf" in schema:
        branch = next(b for b in schema["anyOf"] if valid(sent, b))
        check(typed, sent, branch, where)
        return
    kind = schema.get("type")
    if kind == "null":
        assert typed is None, where
    elif schema.get("format") == "date-time":
        assert typed == instant(sent) and typed.tzinfo is UTC, where
    elif "enum" in schema:
        assert typed == sent and type(typed) is not str, where
        assert isinstance(typed, enum.Enum), where
    elif kind in ("string", "integer", "boolean"):
        assert typed == sent and type(typed) is type(sent), where
    elif kind == "array":
        assert isinstance(typed, list) and len(typed) == len(sent), where
        for index, (t, s) in enumerate(zip(typed, sent, strict=True)):
            check(t, s, schema.get("items", {}), f"{where}[{index}]")
    elif kind == "object" and "properties" in schema:
        assert attrs.has(type(typed)), where
        hints = hints_of(type(typed))
        for name, sub in schema["properties"].items():
            value = getattr(typed, name)
            if name in sent and hints[name] is Any:
                # Modelled as the JSON value (Version.environment_variables allows any).
                assert value == sent[name], f"{where}.{name}"
            elif name in sent:
                check(value, sent[name], sub, f"{where}.{name}")
            else:
                default = attrs.fields_dict(type(typed))[name].default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                assert value == default, f"{where}.{name} absent"
    elif schema.get("title") == "Inputs":
        check_inputs(typed, sent, where)
    else:  # any JSON value
        assert typed == sent, where


INPUT_OUTPUT = {"$ref": "#/components/schemas/InputOutput"}


def check_inputs(typed: dict[str, Any], sent: dict[str, Any], where: str) -> None:
    """A JobIO where the value is an InputOutput object naming one of its fields; as sent else."""
    assert list(typed) == list(sent), where
    for key, value in sent.items():
        shaped = (
            isinstance(value, dict)
            and bool(value.keys() & SCHEMAS["InputOutput"]["properties"].keys())
            and valid(value, INPUT_OUTPUT)
        )
        if shaped:
            assert isinstance(typed[key], JobIO), f"{where}[{key!r}]"
            check(typed[key], value, INPUT_OUTPUT, f"{where}[{key!r}]")
        else:
            assert typed[key] == value and type(typed[key]) is type(value), f"{where}[{key!r}]"


def read_and_check(item: Any, sent: dict[str, Any], schema: dict[str, Any]) -> None:
    """Every field of ``item`` reads, matching ``sent``; ``raw`` is ``sent`` to the digit."""
    assert json.dumps(item.raw) == json.dumps(sent)
    for name, sub in schema["properties"].items():
        where = f"{type(item).__name__}.{name}"
        if name in sent and any(instant(t) is None for t in date_times(sent[name], sub)):
            # The one documented failure: valid RFC 3339 that Python's datetime cannot hold.
            with pytest.raises(SieveDecodeError, match="valid RFC 3339 date-time that cannot be"):
                getattr(item, name)
            continue
        value = getattr(item, name)
        if name in sent and hints_of(type(item))[name] is Any:
            assert value == sent[name], where
        elif name in sent:
            check(value, sent[name], sub, where)


def date_times(sent: Any, schema: dict[str, Any]) -> list[str]:
    """The strings in ``sent`` that ``schema`` says are date-times."""
    schema = resolve(schema)
    if "anyOf" in schema:
        return date_times(sent, next(b for b in schema["anyOf"] if valid(sent, b)))
    if schema.get("format") == "date-time":
        return [sent]
    if schema.get("type") == "array":
        return [t for v in sent for t in date_times(v, schema.get("items", {}))]
    if schema.get("type") == "object" and "properties" in schema:
        props = schema["properties"]
        return [t for k, v in sent.items() if k in props for t in date_times(v, props[k])]
    return []


# -- the five listings -------------------------------------------------------------------------

Read = Callable[[SieveClient], Any]
LISTINGS: dict[str, tuple[str, str, Read]] = {
    "list_function_jobs": (
        "/v2/functions/{owner_name}/{function_name}/jobs",
        "/v2/functions/o/f/jobs",
        lambda sieve: sieve.list_function_jobs("o", "f"),
    ),
    "list_jobs": ("/v2/jobs", "/v2/jobs", lambda sieve: sieve.list_jobs()),
    "list_functions": ("/v2/functions", "/v2/functions", lambda sieve: sieve.list_functions()),
    "list_function_versions": (
        "/v2/functions/{owner_name}/{function_name}/versions",
        "/v2/functions/o/f/versions",
        lambda sieve: sieve.list_function_versions("o", "f"),
    ),
    "list_version_jobs": (
        "/v2/functions/{owner_name}/{function_name}/versions/{version_slug}/jobs",
        "/v2/functions/o/f/versions/v/jobs",
        lambda sieve: sieve.list_version_jobs("o", "f", "v"),
    ),
}


def identity(item: dict[str, Any]) -> Any:
    # As the listings tell items apart: functions by owner/name, the others by id.
    if "id" in item:
        return item["id"]
    return f"{item['owner_name']}/{item['name']}"


PAGES = {
    name: st.lists(drawn(item_schema(template)), max_size=3, unique_by=identity)
    for name, (template, _, _) in LISTINGS.items()
}

SCHEMA_RUNS = settings(
    max_examples=5,
    deadline=None,
    database=None,
    # The fixture hands out a server factory and keeps nothing between examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("shape", ["envelope", "bare"])
@pytest.mark.parametrize("listing", list(LISTINGS))
@SCHEMA_RUNS
@given(data=st.data())
def test_generated_payloads_read_exactly(
    serve_payloads: Any, listing: str, shape: str, data: st.DataObject
) -> None:
    """Items drawn from the document read without error, raw exact, typed values as sent.

    A plain function that runs its own event loop: hypothesis ends a draw that runs out of data
    with `StopTest`, a BaseException, which a test run inside anyio's runner task would turn
    into an unretrieved task exception instead of handing it back to hypothesis.
    """
    template, path, read = LISTINGS[listing]
    page = data.draw(PAGES[listing], label="page")

    async def read_back() -> list[Any]:
        async with serve_payloads() as (payloads, sieve):
            payloads.shape = shape
            payloads.items[path] = page
            return list(await read(sieve).collect())

    items = asyncio.run(read_back())
    assert len(items) == len(page)
    schema = item_schema(template)
    for item, sent in zip(items, page, strict=True):
        read_and_check(item, sent, schema)


def test_model_defaults_are_the_documents() -> None:
    """Where the document gives a field a default, the model's default is that value."""
    from sieve_async import Function, FunctionVersion, JobIO, Restart

    models = {"Job": Job, "InputOutput": JobIO, "Restart": Restart, "Version": FunctionVersion}
    models["FunctionApp"] = Function
    checked = []
    for name, model in models.items():
        fields = attrs.fields_dict(model)
        for prop, sub in SCHEMAS[name]["properties"].items():
            if "default" in sub:
                default = fields[prop].default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                assert default == sub["default"], f"{name}.{prop}"
                checked.append(f"{name}.{prop}")
    assert len(checked) == 7, checked
