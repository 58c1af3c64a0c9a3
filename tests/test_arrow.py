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
