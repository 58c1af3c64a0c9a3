"""Names and checkpoints are checked at the call, with ValueError, before any request."""

from __future__ import annotations

from typing import Any

import pytest

from sieve_async import FunctionRef, SieveNotFoundError

pytestmark = pytest.mark.anyio

#: Names that are not one path segment of their own, or no name at all.
BAD_NAMES = [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    (".", r"must not be '\.' or '\.\.', got '\.'"),
    ("..", r"must not be '\.' or '\.\.', got '\.\.'"),
    ("a/b", "must not contain '/'"),
]


@pytest.mark.parametrize(("bad", "match"), BAD_NAMES)
async def test_bad_names_are_refused_by_every_entry_point(serve: Any, bad: str, match: str) -> None:
    """Blank, '.', '..' and '/' names raise ValueError naming the part, wherever a name goes."""
    async with serve() as (fake, sieve):
        for call in (sieve.list_function_jobs, sieve.list_function_versions):
            with pytest.raises(ValueError, match=f"owner name {match}"):
                call(bad, "retalker")
            with pytest.raises(ValueError, match=f"function name {match}"):
                call("sieve", bad)
        with pytest.raises(ValueError, match=f"owner name {match}"):
            sieve.list_version_jobs(bad, "retalker", "latest")
        with pytest.raises(ValueError, match=f"function name {match}"):
            sieve.list_version_jobs("sieve", bad, "latest")
        with pytest.raises(ValueError, match=f"version name {match}"):
            sieve.list_version_jobs("sieve", "retalker", bad)
        for spec in ((bad, "retalker"), ("sieve", bad), FunctionRef(name=bad, owner_name="o")):
            with pytest.raises(ValueError, match=match):
                sieve.list_jobs_for_functions([spec])
            with pytest.raises(ValueError, match=match):
                FunctionRef.parse(spec)
        if "/" not in bad:
            with pytest.raises(ValueError, match=f"function name {match}"):
                sieve.list_jobs_for_functions([f"sieve/{bad}"])
            with pytest.raises(ValueError, match=f"function name {match}"):
                sieve.list_jobs_for_functions(["sieve/retalker"], resume={f"sieve/{bad}": "done"})
            with pytest.raises(ValueError, match=f"owner name {match}"):
                sieve.list_jobs_for_functions(["sieve/retalker"], resume={f"{bad}/x": "done"})
        assert fake.requests == []


NAMES = ["100%", "a?b", "a#b", "a b", "vidéo", "a;b", "%2e%2e", "%2F", "...", ".x", "名前", "+&="]


async def test_every_other_name_reaches_the_server_as_one_segment(serve: Any) -> None:
    """%, ?, #, spaces, ';', unicode and encoded-looking names arrive decoded as the same name."""
    functions = {f"{name}/{name}": 2 for name in NAMES}
    async with serve(functions=functions) as (fake, sieve):
        for name in NAMES:
            jobs = await sieve.list_function_jobs(name, name).collect()
            assert [job.id for job in jobs] == [job["id"] for job in fake.jobs(f"{name}/{name}")]
            assert fake.requests[-1].path == f"/v2/functions/{name}/{name}/jobs"
            versions = await sieve.list_function_versions(name, name).collect()
            assert len(versions) == 1
            assert fake.requests[-1].path == f"/v2/functions/{name}/{name}/versions"
            # No version has this name, so the server answers 404, but for the name we meant.
            with pytest.raises(SieveNotFoundError):
                await sieve.list_version_jobs("sieve", "retalker", name).collect()
            assert fake.requests[-1].path == f"/v2/functions/sieve/retalker/versions/{name}/jobs"
