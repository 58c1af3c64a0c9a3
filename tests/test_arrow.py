"""``to_arrow()`` on job paginators and on the fan-out: a ``pyarrow.Table`` with the Parquet
export's columns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sieve_async import FunctionRef
from sieve_async._export import CSV_COLUMNS, ParquetWriter, export

pytestmark = pytest.mark.anyio


async def test_a_paginator_to_arrow_is_the_parquet_export_of_its_listing(
    serve: Any, tmp_path: Path
) -> None:
    """Same schema, same rows, same values as the Parquet file the export writes."""
    async with serve(functions={"sieve/a": 130}) as (fake, sieve):
        table = await sieve.list_function_jobs("sieve", "a", page_size=50).to_arrow()
        path = tmp_path / "a.parquet"
        writer = ParquetWriter(path)
        try:
            await export(sieve, [FunctionRef.parse("sieve/a")], writer)
        finally:
            writer.close()
        ids = [job["id"] for job in fake.jobs("sieve/a")]
    assert isinstance(table, pa.Table)
    assert table.column_names == list(CSV_COLUMNS)
    assert table.num_rows == 130
    assert table.column("id").to_pylist() == ids
    assert table.column("_sieve_function").to_pylist() == ["sieve/a"] * 130
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("created_at")[0].as_py() == datetime.fromisoformat(
        fake.jobs("sieve/a")[0]["created_at"]
    ).replace(tzinfo=UTC)
    assert table.equals(pq.read_table(path))


async def test_list_jobs_to_arrow_names_each_jobs_own_function(serve: Any) -> None:
    """A listing over many functions fills ``_sieve_function`` from each job's ``function``."""
    async with serve(functions={"sieve/a": 30, "acme/b": 20}) as (fake, sieve):
        table = await sieve.list_jobs(max_items=40).to_arrow()
        wanted = [
            f"{job['function']['owner_name']}/{job['function']['name']}"
            for job in fake.all_jobs()[:40]
        ]
    assert table.column("_sieve_function").to_pylist() == wanted
    assert set(wanted) == {"sieve/a", "acme/b"}


async def test_an_empty_listing_is_an_empty_table_with_the_columns(serve: Any) -> None:
    """No jobs: zero rows, the same schema."""
    async with serve(functions={"sieve/a": 0}) as (_, sieve):
        table = await sieve.list_function_jobs("sieve", "a").to_arrow()
    assert table.num_rows == 0
    assert table.column_names == list(CSV_COLUMNS)


async def test_fan_out_to_arrow_holds_every_listing_and_reports_failures(serve: Any) -> None:
    """Every job of every listing that did not fail, named by listing; the failure is kept."""
    functions = {"sieve/a": 45, "sieve/b": 12}
    async with serve(functions=functions) as (fake, sieve):
        jobs = sieve.list_jobs_for_functions(
            [*functions, "sieve/gone"], on_error="continue", page_size=10
        )
        table = await jobs.to_arrow()
        wanted = {name: [job["id"] for job in fake.jobs(name)] for name in functions}
    rows = table.select(["_sieve_function", "id"]).to_pylist()
    got = {name: [r["id"] for r in rows if r["_sieve_function"] == name] for name in functions}
    assert got == wanted
    assert table.num_rows == 57
    assert [str(ref) for ref, _ in jobs.failures] == ["sieve/gone"]
    with pytest.raises(RuntimeError, match="already iterated"):
        await jobs.to_arrow()


async def test_without_pyarrow_to_arrow_names_the_extra_before_any_request(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow missing: ImportError saying what to install, and nothing is sent."""
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    async with serve(functions={"sieve/a": 5}) as (fake, sieve):
        with pytest.raises(ImportError, match=r"pip install 'sieve-async\[parquet\]'"):
            await sieve.list_function_jobs("sieve", "a").to_arrow()
        with pytest.raises(ImportError, match=r"pip install 'sieve-async\[parquet\]'"):
            await sieve.list_jobs_for_functions(["sieve/a"]).to_arrow()
    assert fake.requests == []


async def test_nested_columns_are_arrow_structs_and_lists(serve_payloads: Any) -> None:
    """``function`` is a struct, ``inputs`` and ``outputs`` lists of structs with ``data`` as
    JSON text, an output that is a list of items gives one struct per item with its position,
    ``restarts`` a list of structs with UTC timestamps."""
    items = [
        {
            "id": "j1",
            "function": {"name": "a", "owner_name": "sieve"},
            "created_at": "2025-05-30T12:00:00.000001+05:30",
            "inputs": {
                "video": {"type": "sieve.Video", "name": "video", "data": {"url": "u"}},
                "count": 3,
            },
            "outputs": [
                {"type": "str", "data": "x", "is_optional": True},
                [{"type": "str", "data": 1}, {"type": "str", "data": None}],
            ],
            "restarts": [{"timestamp": "2025-05-30T12:00:01Z", "reason": "oom", "run_id": "r"}],
            "children": {"segments": [1, None]},
        },
        {"id": "j2", "function": None, "inputs": {}, "outputs": [], "restarts": None},
    ]
    async with serve_payloads() as (payloads, sieve):
        payloads.items["/v2/functions/sieve/a/jobs"] = items
        table = await sieve.list_function_jobs("sieve", "a").to_arrow()
    schema = table.schema
    assert schema.field("function").type == pa.struct(
        [("name", pa.string()), ("owner_name", pa.string())]
    )
    assert pa.types.is_list(schema.field("inputs").type)
    assert schema.field("inputs").type.value_type.names[:4] == ["input", "type", "name", "data"]
    assert schema.field("outputs").type.value_type.field("output").type == pa.int32()
    assert schema.field("restarts").type.value_type.field("timestamp").type == pa.timestamp(
        "us", tz="UTC"
    )
    first, second = table.to_pylist()
    assert first["function"] == {"name": "a", "owner_name": "sieve"}
    assert first["created_at"] == datetime(2025, 5, 30, 6, 30, 0, 1, tzinfo=UTC)
    assert [(i["input"], i["type"], i["data"]) for i in first["inputs"]] == [
        ("video", "sieve.Video", '{"url":"u"}'),
        ("count", None, "3"),
    ]
    assert [(o["output"], o["data"], o["is_optional"]) for o in first["outputs"]] == [
        (0, '"x"', True),
        (1, "1", None),
        (1, None, None),
    ]
    assert first["restarts"] == [
        {
            "timestamp": datetime(2025, 5, 30, 12, 0, 1, tzinfo=UTC),
            "reason": "oom",
            "type": None,
            "run_id": "r",
        }
    ]
    assert first["children"] == '{"segments":[1,null]}'
    assert (second["function"], second["inputs"], second["outputs"], second["restarts"]) == (
        None,
        [],
        [],
        None,
    )


async def test_values_of_another_json_type_are_kept_as_text_or_left_empty(
    serve_payloads: Any,
) -> None:
    """A field of another JSON type than documented does not cost the page: a scalar becomes
    text, a nested field that cannot be its struct is empty, an input's text fields hold the
    JSON of what came."""
    items = [
        {
            "id": 7,
            "status": 3,
            "function": "sieve/a",
            "inputs": {"x": {"type": 5, "name": ["n"], "is_optional": "yes"}},
            "outputs": {"not": "a list"},
        }
    ]
    async with serve_payloads() as (payloads, sieve):
        payloads.items["/v2/functions/sieve/a/jobs"] = items
        table = await sieve.list_function_jobs("sieve", "a").to_arrow()
    (row,) = table.to_pylist()
    assert (row["id"], row["status"], row["function"], row["outputs"]) == ("7", "3", None, None)
    (value,) = row["inputs"]
    assert (value["type"], value["name"], value["is_optional"]) == ("5", '["n"]', None)
