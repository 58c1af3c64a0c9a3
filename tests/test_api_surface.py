"""The public surface: exported names, argument checks before any request, model structuring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

import sieve_async
from sieve_async import FunctionRef, Job, JobIO, JobStatus, SieveClient
from sieve_async._convert import structure
from sieve_async._validate import STATUSES

pytestmark = pytest.mark.anyio

EXPORTED = {
    "DEFAULT_BASE_URL",
    "AsyncPaginator",
    "ClientStats",
    "ExportResult",
    "FanOut",
    "Function",
    "FunctionRef",
    "FunctionType",
    "FunctionVersion",
    "Job",
    "JobIO",
    "JobStatus",
    "Page",
    "Restart",
    "RestartType",
    "SieveAPIError",
    "SieveAuthenticationError",
    "SieveClient",
    "SieveClosedError",
    "SieveConfigError",
    "SieveConnectionError",
    "SieveDecodeError",
    "SieveError",
    "SieveInvalidRequestError",
    "SieveNotFoundError",
    "SievePaginationError",
    "SievePermissionError",
    "SieveRateLimitError",
    "SieveServerError",
    "SieveTimeoutError",
    "Webhook",
    "WebhookType",
    "WorkerCounts",
    "__version__",
    "export",
}


def test_exported_names() -> None:
    """__all__ is sorted, complete, and every name in it exists."""
    assert set(sieve_async.__all__) == EXPORTED
    assert sieve_async.__all__ == sorted(sieve_async.__all__)
    for name in sieve_async.__all__:
        assert hasattr(sieve_async, name)


def test_status_values_agree() -> None:
    """The statuses accepted for filtering are exactly JobStatus's values."""
    assert tuple(s.value for s in JobStatus) == STATUSES


BAD_LISTING_ARGS: list[tuple[str, dict[str, Any], str]] = [
    ("page_size", {"page_size": 0}, "page_size"),
    ("page_size", {"page_size": -5}, "page_size"),
    ("page_size", {"page_size": True}, "page_size"),
    ("offset", {"offset": -1}, "offset"),
    ("max_items", {"max_items": -1}, "max_items"),
    ("read_ahead", {"read_ahead": -1}, "read_ahead"),
    ("status", {"status": "done"}, "status"),
]


@pytest.mark.parametrize(("_", "kwargs", "match"), BAD_LISTING_ARGS)
async def test_bad_listing_arguments(
    serve: Any, _: str, kwargs: dict[str, Any], match: str
) -> None:
    """Bad keyword options raise ValueError at the call, before any request."""
    async with serve() as (fake, sieve):
        with pytest.raises(ValueError, match=match):
            sieve.list_function_jobs("sieve", "retalker", **kwargs)
        with pytest.raises(ValueError, match=match):
            sieve.list_version_jobs("sieve", "retalker", "latest", **kwargs)
        if "status" not in kwargs:
            with pytest.raises(ValueError, match=match):
                sieve.list_functions(**kwargs)
        assert fake.requests == []


@pytest.mark.parametrize(
    ("owner", "function", "match"),
    [
        ("", "f", "empty"),
        ("o", "", "empty"),
        ("a/b", "f", "'/'"),
        ("o", "x/y", "'/'"),
        ("  ", "f", "empty"),
        (None, "f", "string"),
    ],
)
async def test_bad_names(serve: Any, owner: Any, function: Any, match: str) -> None:
    """Empty names and names with '/' raise ValueError before any request."""
    async with serve() as (fake, sieve):
        for call in (sieve.list_function_jobs, sieve.list_function_versions):
            with pytest.raises(ValueError, match=match):
                call(owner, function)
        with pytest.raises(ValueError, match=match):
            sieve.list_jobs_for_functions([(owner, function)])
        assert fake.requests == []


@pytest.mark.parametrize(
    ("functions", "kwargs", "match"),
    [
        (["noslash"], {}, "owner/function"),
        ("sieve/retalker", {}, "list"),
        (["sieve/retalker"], {"concurrency": 0}, "concurrency"),
        (["sieve/retalker"], {"on_error": "ignore"}, "on_error"),
        (["sieve/retalker"], {"status": "nope"}, "status"),
        ([42], {}, "owner/function"),
    ],
)
async def test_bad_fanout_arguments(
    serve: Any, functions: Any, kwargs: dict[str, Any], match: str
) -> None:
    """list_jobs_for_functions checks every argument before any request."""
    async with serve() as (fake, sieve):
        with pytest.raises(ValueError, match=match):
            sieve.list_jobs_for_functions(functions, **kwargs)
        assert fake.requests == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_connections", 0),
        ("max_retries", -1),
        ("timeout", 0),
        ("rate_limit", 0),
        ("timeout", "soon"),
        ("max_response_bytes", 0),
    ],
)
def test_bad_client_options(option: str, value: Any) -> None:
    """Out-of-range client options raise ValueError naming the option, at construction."""
    with pytest.raises(ValueError, match=option):
        SieveClient(api_key="k", **{option: value})


def test_client_repr_hides_key() -> None:
    """The client's repr names the URL, never the key."""
    sieve = SieveClient(api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(sieve)
    assert "mango.sievedata.com" in repr(sieve)


def test_function_ref_forms() -> None:
    """'owner/function', (owner, function) and FunctionRef name the same function."""
    ref = FunctionRef.parse("sieve/retalker")
    assert ref == FunctionRef.parse(("sieve", "retalker")) == FunctionRef.parse(ref)
    assert str(ref) == "sieve/retalker"


def test_structuring_tolerates_what_the_api_may_send() -> None:
    """Unknown fields, missing optional fields and unknown statuses do not break a Job."""
    raw = {
        "id": "j1",
        "status": "paused-by-operator",
        "created_at": "2024-12-15T01:41:59.195000",
        "completed_at": "2024-12-15T03:41:59+02:00",
        "outputs": [{"type": "str", "data": "a"}, [{"type": "int", "data": 1}]],
        "brand_new_field": {"x": 1},
    }
    job = structure(raw, Job)
    assert job.status == "paused-by-operator"
    assert not isinstance(job.status, JobStatus)
    assert job.created_at == datetime(2024, 12, 15, 1, 41, 59, 195000, tzinfo=UTC)
    assert job.completed_at == datetime(2024, 12, 15, 1, 41, 59, tzinfo=UTC)
    assert job.started_at is None
    assert job.outputs == [JobIO(type="str", data="a"), [JobIO(type="int", data=1)]]
    assert job.raw is raw
    assert structure({"id": "j2", "status": "finished"}, Job).status is JobStatus.FINISHED


#: Modules whose functions change state shared by the whole process: an application's to use.
PROCESS_WIDE_MODULES = {"gc", "signal"}
#: Calls that do the same through modules a library does use.
PROCESS_WIDE_CALLS = {"addHandler", "basicConfig", "set_event_loop_policy"}


def test_the_library_changes_no_process_wide_state() -> None:
    """Only the command line (an application) imports gc or signal, configures logging handlers
    or sets the event-loop policy; no library module does, beyond the package's NullHandler."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted(Path(sieve_async.__file__).parent.glob("*.py")):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                modules = []
            offenders += [
                f"{path.name}:{node.lineno} imports {module}"
                for module in modules
                if module.split(".")[0] in PROCESS_WIDE_MODULES
            ]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                call = node.func.attr
                if call in PROCESS_WIDE_CALLS and not (
                    path.name == "__init__.py" and _null_handler_of_the_package(node)
                ):
                    offenders.append(f"{path.name}:{node.lineno} calls {call}")
    assert offenders == []


def _null_handler_of_the_package(call: Any) -> bool:
    """``logging.getLogger("sieve_async").addHandler(logging.NullHandler())``: the one
    logging set-up a library makes."""
    import ast

    return (
        call.func.attr == "addHandler"
        and ast.unparse(call.func.value) == "_logging.getLogger('sieve_async')"
        and [ast.unparse(arg) for arg in call.args] == ["_logging.NullHandler()"]
    )


async def test_an_option_a_listing_does_not_take_is_a_type_error() -> None:
    """Like any Python call: `status` on a listing of functions, or a misspelt option."""
    async with SieveClient(api_key="k", base_url="http://127.0.0.1:9") as sieve:
        with pytest.raises(TypeError, match=r"list_functions\(\) got an unexpected .* 'status'"):
            sieve.list_functions(status="finished")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"list_jobs\(\) got an unexpected .* 'pagesize'"):
            sieve.list_jobs(pagesize=5)  # type: ignore[call-arg]


async def test_session_and_transport_together_are_refused() -> None:
    """A client sends through one of them; both at once is a ValueError naming them."""
    from sieve_async.testing import FakeSieve

    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="session= or transport=, not both"):
            SieveClient(api_key="k", session=session, transport=FakeSieve().transport())


async def test_stats_is_a_public_type_with_a_readable_repr(serve: Any) -> None:
    """``sieve.stats`` is a `ClientStats` whose repr shows its live counts."""
    from sieve_async.testing import Faults

    async with serve(functions={"sieve/a": 25}, faults=Faults(schedule={1: "503"})) as (_, sieve):
        assert repr(sieve.stats) == "ClientStats(requests=0, retries=0, pages=0)"
        await sieve.list_function_jobs("sieve", "a", page_size=10).collect()
        stats = sieve.stats
    assert isinstance(stats, sieve_async.ClientStats)
    # Pages of 10 overlapping by one: 0-9, 9-18, 18-24; the second asked twice.
    assert repr(stats) == "ClientStats(requests=4, retries=1, pages=3)"
