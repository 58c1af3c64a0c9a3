"""FakeSieve itself: its pool of repeated jobs, and its in-memory transport."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sieve_async.testing import FakeSieve

pytestmark = pytest.mark.anyio


async def test_pooled_listing_has_unique_ids_and_pages_like_any_other(serve: Any) -> None:
    """2,500 jobs from a pool of 100: every id unique and UUID-shaped, served exactly once."""
    async with serve(functions={"sieve/long": 2500}, pool_size=100) as (fake, sieve):
        served = fake.jobs("sieve/long")
        ids = [job["id"] for job in served]
        assert len(ids) == 2500
        assert len(set(ids)) == 2500
        assert all(str(uuid.UUID(i)) == i for i in ids)
        # The pool repeats: same status and inputs, another id (also inside run_id).
        assert served[7]["status"] == served[107]["status"]
        assert served[7]["inputs"] == served[107]["inputs"]
        assert served[107]["run_id"].startswith(served[107]["id"])
        jobs = await sieve.list_function_jobs("sieve", "long", page_size=300).collect()
        assert [job.id for job in jobs] == ids
        finished = await sieve.list_function_jobs("sieve", "long", status="finished").collect()
        assert [j.id for j in finished] == [j["id"] for j in served if j["status"] == "finished"]


async def test_pooled_listing_can_still_change() -> None:
    """Inserting into or removing from a pooled listing writes it out and works as usual."""
    async with FakeSieve(functions={"sieve/long": 300}, pool_size=10) as fake:
        before = [job["id"] for job in fake.jobs("sieve/long")]
        fake.insert_jobs("sieve/long", 2)
        removed = fake.remove_job("sieve/long", 5)
        after = [job["id"] for job in fake.jobs("sieve/long")]
        assert len(after) == 301
        assert after[2:] == [i for i in before if i != removed]


def test_pool_size_must_be_positive() -> None:
    """pool_size=0 is refused at construction."""
    with pytest.raises(ValueError, match="pool_size"):
        FakeSieve(pool_size=0)


async def test_in_memory_transport_serves_what_http_serves() -> None:
    """The same listing, faults and request log through the in-memory transport as over HTTP;
    a redirect to another origin and a hang-up are connection errors."""
    from sieve_async import SieveClient, SieveConnectionError
    from sieve_async.testing import Faults

    fast = {"retry_wait_initial": 0.001, "retry_wait_max": 0.01}
    seen = []
    for http in (True, False):
        fake = FakeSieve(
            functions={"sieve/a": 230}, page_cap=50, faults=Faults(schedule={1: "500", 3: "drop"})
        )
        options: dict[str, Any] = dict(fast)
        if http:
            await fake.start()
        else:
            options["transport"] = fake.transport()
        async with SieveClient(api_key=fake.api_key, base_url=fake.url, **options) as sieve:
            jobs = await sieve.list_function_jobs("sieve", "a", page_size=100).collect()
            seen.append(([job.id for job in jobs], [(r.query, r.fault) for r in fake.requests]))
        await fake.aclose()
    assert seen[0] == seen[1]
    assert len(seen[0][0]) == 230

    elsewhere = FakeSieve(redirect_to="http://127.0.0.2:9")
    async with SieveClient(
        api_key=elsewhere.api_key, base_url=elsewhere.url, transport=elsewhere.transport(), **fast
    ) as sieve:
        with pytest.raises(SieveConnectionError, match=r"serves http://127\.0\.0\.1:0 only"):
            await sieve.list_jobs().collect()
