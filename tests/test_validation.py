"""Names and checkpoints are checked at the call, with ValueError, before any request."""

from __future__ import annotations

import json
import re
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


async def _checkpoint(sieve: Any) -> dict[str, Any]:
    """A true checkpoint of sieve/retalker after three jobs, JSON round-tripped."""
    paginator = sieve.list_function_jobs("sieve", "retalker", page_size=5)
    async with paginator:
        async for _ in paginator:
            if paginator.checkpoint["offset"] == 3:
                break
    return dict(json.loads(json.dumps(paginator.checkpoint)))


MISSING = object()

BAD_FIELDS = [
    ("version", 2),
    ("version", "1"),
    ("version", True),
    ("version", 1.0),
    ("version", None),
    ("version", MISSING),
    ("listing", "/v2/functions/sieve/whisper/jobs"),
    ("listing", 3),
    ("listing", MISSING),
    ("offset", -1),
    ("offset", True),
    ("offset", 1.5),
    ("offset", "3"),
    ("offset", None),
    ("offset", MISSING),
    ("last_id", [1]),
    ("last_id", {"id": 1}),
    ("last_id", True),
    ("last_id", 1.5),
    ("last_id", MISSING),
    ("recent", [{"id": 1}]),
    ("recent", [[1]]),
    ("recent", [True]),
    ("recent", [1.5]),
    ("recent", "abc"),
    ("recent", {"a": 1}),
    ("recent", None),
    ("recent", MISSING),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
async def test_malformed_checkpoint_field_is_a_value_error_naming_it(
    serve: Any, field: str, value: Any
) -> None:
    """Each malformed checkpoint field raises ValueError naming that field, before any request."""
    async with serve() as (fake, sieve):
        checkpoint = await _checkpoint(sieve)
        sent = len(fake.requests)
        if value is MISSING:
            del checkpoint[field]
        else:
            checkpoint[field] = value
        with pytest.raises(ValueError, match=f"checkpoint '{field}'"):
            sieve.list_function_jobs("sieve", "retalker", resume=checkpoint)
        with pytest.raises(ValueError, match=f"'sieve/retalker'.*checkpoint '{field}'"):
            sieve.list_jobs_for_functions(["sieve/retalker"], resume={"sieve/retalker": checkpoint})
        assert len(fake.requests) == sent


async def test_checkpoint_with_an_unknown_field_is_refused(serve: Any) -> None:
    """A field make_checkpoint never writes means the dict is not ours: ValueError naming it."""
    async with serve() as (fake, sieve):
        checkpoint = {**await _checkpoint(sieve), "position": 3}
        sent = len(fake.requests)
        with pytest.raises(ValueError, match="'position' is not a checkpoint field"):
            sieve.list_function_jobs("sieve", "retalker", resume=checkpoint)
        assert len(fake.requests) == sent


async def test_checkpoint_with_integer_ids_and_no_last_id_is_accepted(serve: Any) -> None:
    """Integer ids, and a null last_id with an empty recent list, make a valid checkpoint."""
    async with serve(functions={"sieve/a": 30}) as (fake, sieve):
        listing = sieve.list_function_jobs("sieve", "a").listing
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        start = {"version": 1, "listing": listing, "offset": 10, "last_id": None, "recent": []}
        jobs = await sieve.list_function_jobs("sieve", "a", resume=start).collect()
        assert [job.id for job in jobs] == ids[10:]
        numbered = {**start, "last_id": 7, "recent": [5, 6]}
        assert sieve.list_function_jobs("sieve", "a", resume=numbered).checkpoint == numbered


@pytest.mark.parametrize("value", [None, "Done", "finished", 3, [], {"version": 1}, {"offset": 3}])
async def test_fan_out_resume_value_neither_done_nor_checkpoint(serve: Any, value: Any) -> None:
    """A fan-out resume= value that is neither 'done' nor a checkpoint names its function."""
    async with serve() as (fake, sieve):
        names = ["sieve/retalker", "sieve/whisper"]
        with pytest.raises(ValueError, match=re.escape("resume= for 'sieve/whisper'")):
            sieve.list_jobs_for_functions(
                names, resume={"sieve/retalker": "done", "sieve/whisper": value}
            )
        assert fake.requests == []


@pytest.mark.parametrize(
    "key", [("sieve", "retalker"), FunctionRef(name="retalker", owner_name="sieve"), 3, None]
)
async def test_fan_out_resume_keys_must_be_strings(serve: Any, key: Any) -> None:
    """resume= is keyed by 'owner/name' strings, as .checkpoints writes it; others: ValueError."""
    async with serve() as (fake, sieve):
        with pytest.raises(ValueError, match="'owner/name' strings"):
            sieve.list_jobs_for_functions(["sieve/retalker"], resume={key: "done"})
        assert fake.requests == []
