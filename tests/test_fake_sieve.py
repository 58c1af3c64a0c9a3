"""FakeSieve itself: its pool of repeated jobs, its in-memory transport, and one job by id."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from servers import ThreadedFake

from sieve_async import SieveClient, SieveNotFoundError
from sieve_async.testing import DEFAULT_API_KEY, FakeSieve

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
    from sieve_async import SieveConnectionError
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


async def test_a_million_jobs_are_made_as_they_are_served(serve: Any) -> None:
    """A listing of 1,000,000 jobs: the last page is there, in order, with ids of its own;
    the same seed makes the same jobs, another seed others."""
    async with serve(functions={"sieve/big": 1_000_000}, seed=7) as (fake, sieve):
        tail = await sieve.list_function_jobs("sieve", "big", offset=999_700).collect()
        head = await sieve.list_function_jobs("sieve", "big", max_items=300).collect()
        assert len(tail) == 300
        assert len({job.id for job in head + tail}) == 600
        created = [job.created_at for job in head + tail]
        assert created == sorted(created, reverse=True)
        assert len(set(created)) == 600
        assert fake.requests[0].query == {"offset": "999700"}
        errors = sieve.list_function_jobs("sieve", "big", status="error", offset=142_500)
        errors_seen = [job.raw for job in await errors.collect()]
        assert errors_seen and {job["status"] for job in errors_seen} == {"error"}
    for seed, same in ((7, True), (8, False)):
        again = FakeSieve(functions={"sieve/big": 1_000_000}, seed=seed)
        async with SieveClient(
            api_key=again.api_key, base_url=again.url, transport=again.transport()
        ) as other:
            listing = other.list_function_jobs("sieve", "big", offset=999_700)
            assert ([job.raw for job in await listing.collect()] == [j.raw for j in tail]) is same


def _status_of(jobs: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [job for job in jobs if job["status"] == status]


@pytest.mark.parametrize("status", [None, "finished", "error", "queued"])
async def test_insertions_and_removals_show_in_every_view(serve: Any, status: str | None) -> None:
    """After jobs land at the head and others leave (made ones and inserted ones), each
    status view is the full listing filtered, and ``GET /v2/jobs`` is every listing merged
    newest first, at any offset."""
    functions = {"sieve/a": 400, "sieve/b": 250, "acme/c": 0, "acme/d": 90}
    async with serve(functions=functions, seed=3) as (fake, sieve):
        before = fake.jobs("sieve/a")
        fake.insert_jobs("sieve/a", 4)
        gone = [fake.remove_job("sieve/a", i) for i in (1, 10, 10, 399)]
        fake.insert_jobs("acme/d", 2)
        gone.append(fake.remove_job("acme/d", 0))
        gone.append(fake.remove_job("sieve/b", -1))
        after = fake.jobs("sieve/a")
        assert gone[0] == fake.inserted[1]
        assert [job["id"] for job in after[3:]] == [
            job["id"] for job in before if job["id"] not in gone
        ]
        assert after[0]["created_at"] > after[1]["created_at"] > before[0]["created_at"]
        for name in functions:
            everything = fake.jobs(name)
            expected = everything if status is None else _status_of(everything, status)
            assert fake.jobs(name, status) == expected
        merged = sorted(
            (job for name in functions for job in fake.jobs(name, status)),
            key=lambda job: job["created_at"],
            reverse=True,
        )
        assert fake.all_jobs() == sorted(
            (job for name in functions for job in fake.jobs(name)),
            key=lambda job: job["created_at"],
            reverse=True,
        )
        for offset in (0, 1, 37, len(merged) // 2, len(merged) - 3, len(merged)):
            page = await sieve.list_jobs(offset=offset, max_items=25, status=status).collect()
            assert [job.raw for job in page] == merged[offset : offset + 25]


@pytest.mark.parametrize("http", [False, True], ids=["in-memory", "http"])
@pytest.mark.parametrize("options", [{}, {"pool_size": 7}, {"variety": True}])
async def test_get_job_returns_the_job_the_listing_serves(
    serve: Any, http: bool, options: dict[str, Any]
) -> None:
    """``GET /v2/jobs/{job_id}`` serves each job as its listing does (a pooled copy, an
    inserted job too); a job removed since, or never made, is the document's 404."""
    functions = {"sieve/a": 60, "acme/b": 25}
    async with serve(http=http, functions=functions, seed=4, **options) as (fake, sieve):
        fake.insert_jobs("acme/b", 2)
        removed = [fake.remove_job("sieve/a", 30), fake.remove_job("acme/b", 0)]
        listed = await sieve.list_jobs().collect()
        assert len(listed) == 60 + 25 + 2 - 2
        for job in listed:
            assert (await sieve.get_job(job.id)).raw == job.raw
        finished = next(job for job in listed if job.outputs)
        fake.requests.clear()
        await sieve.get_job(finished.id)
        outputs = str(len(finished.raw["outputs"]))
        assert [r.query for r in fake.requests] == [{}, {"offset": outputs}]
        assert [r.status for r in fake.requests] == [200, 200]
        for gone in [*removed, "43d7add5-61cf-44ad-aac8-c5d14c642bb4", "no-such-job"]:
            with pytest.raises(SieveNotFoundError, match=r"Job not found\.") as caught:
                await sieve.get_job(gone)
            assert caught.value.status == 404


async def test_get_job_offset_excludes_the_first_outputs() -> None:
    """``offset`` (the document's only query parameter here) drops that many outputs; 0 or
    below drops none; a value that is not an integer is a 422 naming it."""
    import aiohttp

    async with (
        FakeSieve(functions={"sieve/a": 200}, seed=2) as fake,
        aiohttp.ClientSession(fake.url, headers={"X-API-Key": fake.api_key}) as session,
    ):
        job = next(job for job in fake.jobs("sieve/a") if len(job["outputs"]) == 2)

        async def get(query: str) -> tuple[int, Any]:
            async with session.get(f"/v2/jobs/{job['id']}?{query}") as response:
                return response.status, await response.json()

        assert await get("") == (200, job)
        assert await get("offset=-3") == (200, job)
        assert await get("offset=1") == (200, {**job, "outputs": job["outputs"][1:]})
        assert await get("offset=2") == (200, {**job, "outputs": []})
        status, body = await get("offset=x")
        assert status == 422
        assert [(d["loc"], d["type"]) for d in body["detail"]] == [
            (["query", "offset"], "int_parsing")
        ]


async def test_pool_size_still_repeats_contents_with_times_in_order(serve: Any) -> None:
    """pool_size repeats job contents (not times); the listing stays newest first."""
    async with serve(functions={"sieve/long": 1000}, pool_size=10) as (fake, _):
        jobs = fake.jobs("sieve/long")
        assert jobs[3]["inputs"] == jobs[13]["inputs"]
        assert jobs[3]["id"][:-12] == jobs[13]["id"][:-12]
        assert jobs[13]["id"].endswith("00000000000d")
        created = [job["created_at"] for job in jobs]
        assert created == sorted(created, reverse=True)


def test_fake_server_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Each option of ``fake-server --help`` says its default."""
    from sieve_async import cli

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["fake-server", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [
        ("--host HOST", "127.0.0.1"),
        ("--port PORT", "8080"),
        ("--functions N", "3"),
        ("--jobs N", "1000"),
        ("--shape", "the shapes the API uses today"),
        ("--page-cap N", "no cap"),
        ("--fault-rate R", "0.0"),
        ("--latency S", "0.0"),
        ("--seed SEED", "0"),
        ("--api-key API_KEY", "sk-fake- sieve-0123456789abcdef"),
        ("--variety", "off"),
        ("--timestamps {naive,offset}", "naive"),
    ]:
        described = text.split(f" {option} ", 1)[1].split(" --", 1)[0]
        assert f"(default: {default}" in described, option


# -- conformance to the OpenAPI document -------------------------------------------------------

#: The Sieve API's OpenAPI document (info.version 0.1.0), as published.
DOCUMENT = Path(__file__).parent / "data" / "sieve-openapi.json"
#: The five listings FakeSieve serves, by their operation ids in the document.
LISTINGS = (
    "list_functions",
    "get_function_versions",
    "list_function_jobs",
    "get_function_jobs_by_version_slug",
    "v2_list_jobs",
)


#: schemathesis, configured for the five listings. ``date-time`` formats are not checked:
#: the default FakeSieve writes times without an offset, as the live API and the document's
#: own examples do (`test_served_json_matches_the_document` checks them where they have one).
CONFORMANCE = schemathesis.openapi.from_path(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {
            "generation": {
                "max-examples": 5,
                "database": "none",
                "deterministic": True,
                # The API (FastAPI) ignores query parameters it does not declare.
                "allow-extra-parameters": False,
            },
            "checks": {"response_schema_conformance": {"validate-formats": False}},
            "auth": {"openapi": {"APIKeyHeader": {"api_key": DEFAULT_API_KEY}}},
        }
    ),
).include(operation_id=list(LISTINGS))


@pytest.fixture(scope="module")
def served_fake() -> Iterator[FakeSieve]:
    with ThreadedFake(FakeSieve(functions={"sieve/retalker": 120, "acme/empty": 0})) as fake:
        yield fake


def _call_and_validate(case: Any, fake: FakeSieve) -> None:
    case.call_and_validate(base_url=fake.url)
    if "owner_name" in (case.path_parameters or {}):
        # Generated names are almost never served: ask again for a function that is.
        case.path_parameters = {
            **case.path_parameters,
            "owner_name": "sieve",
            "function_name": "retalker",
            **({"version_slug": "latest"} if "version_slug" in case.path_parameters else {}),
        }
        case.call_and_validate(base_url=fake.url)


@CONFORMANCE.parametrize()
def test_conforms_to_the_document(case: Any, served_fake: FakeSieve) -> None:
    """schemathesis, every check, against the five listings of the default FakeSieve: status
    codes, bodies, content types, auth, data the document allows accepted (``limit=0``, a
    negative ``offset``, any ``status``) and data it forbids refused (``limit=``, ``limit=x``)."""
    _call_and_validate(case, served_fake)


async def test_queries_are_as_strict_as_the_document_and_errors_read_as_its_examples() -> None:
    """``limit`` and ``offset`` have no minimum in the document and ``status`` is a free string:
    none of them is refused; an empty ``limit`` is not an integer (422); the 401 and 404 bodies
    are the document's examples."""
    import aiohttp

    async with (
        FakeSieve(functions={"sieve/a": 30}) as fake,
        aiohttp.ClientSession(fake.url, headers={"X-API-Key": fake.api_key}) as session,
    ):
        ids = [job["id"] for job in fake.jobs("sieve/a")]
        finished = [job["id"] for job in fake.jobs("sieve/a", "finished")]

        async def get(path: str, query: str = "", key: str | None = None) -> tuple[int, Any]:
            headers = {} if key is None else {"X-API-Key": key}
            async with session.get(f"{path}?{query}", headers=headers) as response:
                return response.status, await response.json()

        async def page(query: str) -> tuple[list[str], int]:
            status, body = await get("/v2/functions/sieve/a/jobs", query)
            assert status == 200, body
            return [job["id"] for job in body["data"]], body["next_offset"]

        assert await page("limit=0") == ([], 0)
        assert await page("limit=0&offset=30") == ([], -1)
        assert await page("limit=-5&offset=4") == ([], 4)
        assert await page("offset=-1&limit=3") == (ids[:3], 3)
        assert await page("status=bogus") == ([], -1)
        assert await page("status=FINISHED") == ([], -1)
        assert await page("status=") == (ids, -1)
        assert await page("status=finished") == (finished, -1)
        refused = (("limit=&offset=", "limit"), ("offset=", "offset"), ("limit=x", "limit"))
        for query, name in refused:
            status, body = await get("/v2/jobs", query)
            assert status == 422
            assert [(d["loc"], d["type"]) for d in body["detail"]] == [
                (["query", name], "int_parsing")
            ]
        assert await get("/v2/jobs", key="wrong") == (
            401,
            {"detail": "Unauthorized - valid API Key required."},
        )
        not_found = {"detail": "Function not found."}
        assert await get("/v2/functions/sieve/nope/jobs") == (404, not_found)
        assert await get("/v2/functions/sieve/nope/versions") == (404, not_found)
        assert await get("/v2/functions/sieve/a/versions/0000/jobs") == (
            404,
            {"detail": "Function version not found."},
        )
        assert await get("/v2/functions/sieve/a/versions/latest/jobs", "limit=2") == (
            200,
            {"data": fake.jobs("sieve/a")[:2], "next_offset": 2},
        )


# -- what FakeSieve serves, against the document's schemas --------------------------------------

#: The response schema of each listing in the document, by a path FakeSieve serves.
SERVED_PATHS = {
    "/v2/functions": ("/v2/functions", "ListFunctions"),
    "/v2/functions/{owner_name}/{function_name}/versions": (
        "/v2/functions/sieve/a/versions",
        "Versions",
    ),
    "/v2/functions/{owner_name}/{function_name}/jobs": ("/v2/functions/sieve/a/jobs", "Jobs"),
    "/v2/functions/{owner_name}/{function_name}/versions/{version_slug}/jobs": (
        "/v2/functions/sieve/b/versions/latest/jobs",
        "Jobs",
    ),
    "/v2/jobs": ("/v2/jobs", "Jobs"),
}
#: The live API's times (and the document's examples): RFC 3339 without the offset.
NAIVE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?")


def _validators(*, naive_times: bool) -> dict[str, Any]:
    import jsonschema
    from rfc3339_validator import validate_rfc3339

    document = json.loads(DOCUMENT.read_text())
    formats = jsonschema.FormatChecker([])

    @formats.checks("date-time")
    def _date_time(value: object) -> bool:
        # RFC 3339 (section 5.6) allows a lowercase "t" and "z"; rfc3339-validator does not.
        text = str(value)
        return validate_rfc3339(text.upper()) or (
            naive_times and NAIVE_TIME.fullmatch(text) is not None
        )

    validators = {}
    for path, (_, _name) in SERVED_PATHS.items():
        operation = document["paths"][path]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        root = {**schema, "components": document["components"]}
        validators[path] = jsonschema.Draft202012Validator(root, format_checker=formats)
    return validators


async def _served(fake: FakeSieve) -> dict[str, bytes]:
    import aiohttp

    bodies = {}
    async with aiohttp.ClientSession(fake.url, headers={"X-API-Key": fake.api_key}) as session:
        for path, (served, _) in SERVED_PATHS.items():
            async with session.get(served, params={"limit": "1000"}) as response:
                assert response.status == 200
                bodies[path] = await response.read()
    return bodies


@pytest.mark.parametrize(
    ("options", "naive_times"),
    [({}, True), ({"timestamps": "offset"}, False), ({"variety": True}, True)],
    ids=["default", "offset", "variety"],
)
async def test_served_json_matches_the_document(options: dict[str, Any], naive_times: bool) -> None:
    """Every listing's body validates against the document's schema, ``date-time`` formats
    included (RFC 3339; times without an offset only where FakeSieve writes them so)."""
    functions = {"sieve/a": 300, "sieve/b": 200}
    async with FakeSieve(functions=functions, seed=5, **options) as fake:
        bodies = await _served(fake)
    validators = _validators(naive_times=naive_times)
    for path, body in bodies.items():
        errors = [e.message for e in validators[path].iter_errors(json.loads(body))]
        assert errors == [], path
    if not naive_times:
        strict = _validators(naive_times=False)
        naive = json.loads(bodies["/v2/jobs"].replace(b"+00:00", b""))
        assert not strict["/v2/jobs"].is_valid(naive)


async def test_variety_serves_the_full_range_reproducibly() -> None:
    """``variety=True`` serves every kind of value the document allows (seeded: the same seed
    serves the same bytes, another seed others); without it, none of them."""
    functions = {"sieve/a": 300, "sieve/b": 200}
    served = {}
    for seed, variety in ((5, True), (5, True), (6, True), (5, False)):
        async with FakeSieve(functions=functions, seed=seed, variety=variety) as fake:
            served[seed, variety, len(served)] = await _served(fake)
    first, again, other, plain = served.values()
    assert first == again
    assert first["/v2/jobs"] != other["/v2/jobs"]

    def kinds(bodies: dict[str, bytes]) -> set[str]:
        jobs = json.loads(bodies["/v2/jobs"])["data"]
        found = set()
        for job in jobs:
            for field in ("created_at", "started_at", "completed_at"):
                found.add(_time_kind(job[field]))
            for field in ("function", "error", "run_id", "children", "restarts", "created_at"):
                if field in job and job[field] is None:
                    found.add(f"null {field}")
            if job.get("children"):
                found.add("children")
            if job.get("restarts"):
                found.add("restarts")
            found.update(
                f"input {type(value).__name__}"
                for value in job["inputs"].values()
                if not isinstance(value, dict) or "type" not in value
            )
            if re.search(rb"[0-9]{20}", json.dumps(job).encode()):
                found.add("beyond 64 bits")
        for app in json.loads(bodies["/v2/functions"]):
            found.update(f"null app {k}" for k, v in app.items() if v is None)
        return found

    assert kinds(first) >= {
        "naive",
        "Z",
        "+00:00",
        "other offset",
        "lowercase",
        "milliseconds",
        "null function",
        "null error",
        "null run_id",
        "null children",
        "null restarts",
        "null created_at",
        "children",
        "restarts",
        "input int",
        "input float",
        "input bool",
        "input str",
        "input NoneType",
        "input list",
        "beyond 64 bits",
        "null app title",
    }
    assert kinds(plain) == {"naive", "none"}
    big = json.loads(first["/v2/jobs"])["data"]
    assert any(
        isinstance(value, int) and value >= 2**64 for job in big for value in job["inputs"].values()
    )


def _time_kind(value: str | None) -> str:
    if value is None:
        return "none"
    if value.endswith("z"):
        return "lowercase"
    if re.fullmatch(r".*\.\d{3}Z", value):
        return "milliseconds"
    if value.endswith("Z"):
        return "Z"
    if value.endswith("+00:00"):
        return "+00:00"
    if re.search(r"[+-]\d\d:\d\d$", value):
        return "other offset"
    return "naive"


def test_fake_server_command_serves_variety_and_offsets() -> None:
    """``sieve-async fake-server --variety --timestamps offset`` serves what FakeSieve does with
    those options (the same seed, the same bytes)."""
    import signal
    import subprocess
    import sys
    import urllib.request

    command = str(Path(sys.executable).parent / "sieve-async")
    args = ["--port", "0", "--functions", "1", "--jobs", "40", "--seed", "3"]
    args += ["--variety", "--timestamps", "offset"]
    with subprocess.Popen(
        [command, "fake-server", *args], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        request = urllib.request.Request(
            f"{url}/v2/functions/sieve/retalker/jobs", headers={"X-API-Key": DEFAULT_API_KEY}
        )
        with urllib.request.urlopen(request) as response:
            served = response.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0
    fake = FakeSieve(functions={"sieve/retalker": 40}, seed=3, variety=True, timestamps="offset")
    jobs = json.loads(served)["data"]
    assert jobs == fake.jobs("sieve/retalker")
    assert {_time_kind(job["created_at"]) for job in jobs} > {"+00:00", "Z", "other offset"}
