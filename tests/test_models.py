"""Lazily typed listing items: what a user reads equals cattrs' eager result, field by field."""

from __future__ import annotations

import pickle
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve_async import (
    Function,
    FunctionType,
    FunctionVersion,
    Job,
    JobIO,
    JobStatus,
    Restart,
    RestartType,
    SieveDecodeError,
    Webhook,
    WebhookType,
    WorkerCounts,
)
from sieve_async._convert import converter, structure, structure_eager, structure_fn

FEW = settings(max_examples=60, deadline=None)

JOB_FIELDS = [a.name for a in attrs.fields(Job) if a.name != "raw"]

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
ids = st.uuids().map(str) | st.text(string.ascii_letters + string.digits + "-", min_size=1)
names = st.text(string.ascii_lowercase + "-_", min_size=1, max_size=12)
timespecs = st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"])


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Naive UTC ISO strings as the API sends them, now and then with an explicit offset."""
    moment = draw(st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)))
    if draw(st.integers(0, 9)) == 0:
        offset = timezone(timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
        moment = moment.replace(tzinfo=offset)
    return moment.isoformat(timespec=draw(timespecs))


def with_optional(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with ``required`` keys, any of ``optional`` and a few fields no model knows."""
    unknown = st.dictionaries(st.sampled_from(["new_field", "extra", "z_meta"]), json_values)
    return st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries(required, optional=optional),
        unknown,
    )


job_ios = with_optional(
    {},
    {
        "type": st.none() | st.sampled_from(["sieve.Video", "str", "int", "sieve.File"]),
        "name": st.none() | names,
        "data": json_values,
        "description": st.none() | st.text(max_size=10),
        "schema": st.none() | st.dictionaries(names, json_values, max_size=2),
        "run_id": st.none() | ids,
        "is_optional": st.none() | st.booleans(),
    },
)
restarts = with_optional(
    {},
    {
        "timestamp": timestamps(),
        "reason": st.text(max_size=10),
        "type": st.sampled_from(["preemption", "OOM", "error"]) | names,
        "run_id": st.none() | ids,
    },
)
statuses = st.sampled_from([s.value for s in JobStatus]) | st.sampled_from(
    ["paused", "Finished", ""]
)
raw_jobs = with_optional(
    {"id": ids},
    {
        "function_id": ids,
        "organization_id": ids,
        "function": st.none() | st.fixed_dictionaries({"name": names, "owner_name": names}),
        "status": statuses,
        "created_at": st.none() | timestamps(),
        "started_at": st.none() | timestamps(),
        "completed_at": st.none() | timestamps(),
        "inputs": st.dictionaries(names, job_ios | json_values, max_size=3),
        "outputs": st.lists(job_ios | st.lists(job_ios, max_size=2), max_size=3),
        "error": st.none() | st.text(max_size=20),
        "visibility": st.sampled_from(["private", "public"]),
        "run_id": st.none() | ids,
        "children": st.none() | st.dictionaries(names, st.lists(json_values, max_size=2)),
        "restarts": st.none() | st.lists(restarts, max_size=2),
    },
)


@FEW
@given(raw=raw_jobs, order=st.permutations(JOB_FIELDS))
def test_lazy_job_reads_equal_eager_cattrs(raw: dict[str, Any], order: list[str]) -> None:
    """Every field of a lazy Job, read in any order, equals cattrs' eager result; so does ==."""
    lazy = structure_fn(Job)(raw)
    eager = structure_eager(raw, Job)
    assert lazy.raw is raw
    assert eager.raw is raw
    for name in order:
        assert getattr(lazy, name) == getattr(eager, name), name
    assert lazy == eager
    assert structure_fn(Job)(raw) == eager
    assert repr(lazy) == repr(eager)


@FEW
@given(raw=raw_jobs)
def test_lazy_job_types(raw: dict[str, Any]) -> None:
    """Timestamps are aware UTC, a known status is a JobStatus and an unknown one stays a str."""
    job = structure_fn(Job)(raw)
    for name in ("created_at", "started_at", "completed_at"):
        value = getattr(job, name)
        assert value is None or (isinstance(value, datetime) and value.utcoffset() == timedelta())
        if raw.get(name) is not None and "+" not in raw[name] and "-" not in raw[name][10:]:
            assert value == datetime.fromisoformat(raw[name]).replace(tzinfo=UTC)
    status = raw.get("status")
    if status in {s.value for s in JobStatus}:
        assert job.status is JobStatus(status)
    elif status is not None:
        assert type(job.status) is str
        assert job.status == status
    for output in job.outputs:
        items = output if isinstance(output, list) else [output]
        assert all(isinstance(item, JobIO) for item in items)
    assert not hasattr(job, "new_field")
    assert not hasattr(job, "extra")


@FEW
@given(raw=raw_jobs)
def test_lazy_job_survives_pickle_evolve_and_asdict(raw: dict[str, Any]) -> None:
    """Pickling, attrs.evolve and attrs.asdict of a lazy Job agree with the eager one."""
    eager = structure_eager(raw, Job)
    restored = pickle.loads(pickle.dumps(structure_fn(Job)(raw)))
    assert restored == eager
    assert restored.raw == raw
    evolved = attrs.evolve(structure_fn(Job)(raw), error="changed")
    assert evolved.error == "changed"
    assert attrs.evolve(evolved, error=eager.error) == eager
    assert attrs.asdict(structure_fn(Job)(raw)) == attrs.asdict(eager)


def test_converter_structure_is_lazy() -> None:
    """converter.structure and structure() hand out a Job holding raw, and only the id and a
    documented status ready-made, until other fields are read."""
    raw = {"id": "j1", "status": "finished", "created_at": "2024-12-15T01:41:59.195000"}
    for job in (converter.structure(raw, Job), structure(raw, Job)):
        assert vars(job) == {"raw": raw, "id": "j1", "status": JobStatus.FINISHED}
        assert job.created_at == datetime(2024, 12, 15, 1, 41, 59, 195000, tzinfo=UTC)
        assert set(vars(job)) == {"raw", "id", "status", "created_at"}
    # A status the enum does not know is left to the converter's hook, on first read.
    odd = structure({"id": "j2", "status": "paused"}, Job)
    assert vars(odd) == {"raw": {"id": "j2", "status": "paused"}, "id": "j2"}
    assert odd.status == "paused" and not isinstance(odd.status, JobStatus)


def test_reading_a_nested_field_types_the_whole_job_once() -> None:
    """The first read of a list, object or nested field sets every field at once, equal to the
    eager result; a value read before keeps its identity."""
    raw = {
        "id": "j1",
        "status": "finished",
        "created_at": "2024-12-15T01:41:59.195000",
        "function": {"name": "retalker", "owner_name": "sieve"},
        "inputs": {"video": {"type": "sieve.Video", "data": {"url": "u"}}},
        "outputs": [{"type": "str", "data": "done"}],
        "error": "",
    }
    job = structure_fn(Job)(raw)
    created = job.created_at
    assert set(vars(job)) == {"raw", "id", "status", "created_at"}
    inputs = job.inputs
    assert set(vars(job)) == {"raw", *JOB_FIELDS}
    assert job.created_at is created
    assert job.inputs is inputs
    assert job.raw is raw
    assert job == structure_eager(raw, Job)
    assert job.outputs == [JobIO(type="str", data="done")]


def test_a_malformed_field_leaves_the_others_readable_one_by_one() -> None:
    """With one field malformed, reading another nested field types that field alone, and the
    malformed one still raises when it is read, naming itself."""
    raw = {
        "id": "j9",
        "created_at": "yesterday",
        "inputs": {"n": {"type": "int", "data": 3}},
        "restarts": [{"reason": "spot"}],
    }
    job = structure_fn(Job)(raw)
    assert job.inputs == {"n": JobIO(type="int", data=3)}
    assert job.restarts == [Restart(reason="spot")]
    assert set(vars(job)) == {"raw", "id", "inputs", "restarts"}
    with pytest.raises(SieveDecodeError, match=r"'created_at' of Job 'j9'.*not an RFC 3339"):
        _ = job.created_at


def test_missing_optional_fields_take_defaults() -> None:
    """A job with only an id reads every other field as the model's default."""
    job = structure_fn(Job)({"id": "only"})
    assert job == Job(id="only")
    assert job.inputs == {}
    assert job.outputs == []
    assert job.inputs is job.inputs  # typed once, then kept


def test_malformed_timestamp_fails_on_access() -> None:
    """A broken timestamp raises SieveDecodeError naming the job and field when it is read."""
    job = structure_fn(Job)({"id": "job-7", "status": "error", "created_at": "yesterday"})
    assert job.status is JobStatus.ERROR
    with pytest.raises(SieveDecodeError, match=r"'created_at' of Job 'job-7'") as caught:
        _ = job.created_at
    assert isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(SieveDecodeError, match="job-7"):
        structure_eager(job.raw, Job)


@pytest.mark.parametrize(
    "item", [None, [], "j1", {"status": "finished"}, {"identifier": "j1"}], ids=repr
)
def test_item_without_identity_fails_at_creation(item: Any) -> None:
    """An item that is not an object with an id is refused when it arrives, not when it is read."""
    with pytest.raises(SieveDecodeError, match="listed Job"):
        structure_fn(Job)(item)
    with pytest.raises(SieveDecodeError):
        structure(item, Job)


def test_function_needs_owner_and_name() -> None:
    """A Function item is identified by owner_name and name."""
    make = structure_fn(Function)
    with pytest.raises(SieveDecodeError, match="'owner_name' and 'name'"):
        make({"name": "retalker"})
    function = make({"name": "retalker", "owner_name": "sieve", "tags": ["video"]})
    assert str(function.ref) == "sieve/retalker"
    assert function.tags == ["video"]


raw_versions = with_optional(
    {"id": ids},
    {
        "build_status": names,
        "queued_at": st.none() | timestamps(),
        "built_at": st.none() | timestamps(),
        "python_packages": st.lists(names, max_size=2),
        "gpu": st.booleans(),
        "split": st.integers(0, 8),
        "inputs": st.lists(job_ios, max_size=2),
        "environment_variables": json_values,
    },
)
raw_functions = with_optional(
    {"name": names, "owner_name": names},
    {
        "visibility": st.none() | names,
        "tags": st.none() | st.lists(names, max_size=2),
        "latest_version": st.none() | raw_versions,
        "restart_on_error": st.none() | st.booleans(),
    },
)


@FEW
@given(raw=raw_functions)
def test_lazy_function_and_version_equal_eager(raw: dict[str, Any]) -> None:
    """Functions and their nested versions read the same lazily as eagerly."""
    lazy = structure_fn(Function)(raw)
    eager = structure_eager(raw, Function)
    assert lazy == eager
    assert lazy.raw is raw
    if raw.get("latest_version") is not None:
        version = lazy.latest_version
        assert isinstance(version, FunctionVersion)
        assert version.raw is raw["latest_version"]
        assert version == structure_eager(raw["latest_version"], FunctionVersion)


def test_eager_construction_still_works() -> None:
    """Building a Job by hand (attrs __init__) bypasses the lazy path entirely."""
    job = Job(id="x", status=JobStatus.QUEUED)
    assert job.status is JobStatus.QUEUED
    assert job.raw == {}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        job.status = JobStatus.ERROR  # type: ignore[misc]


def test_str_id_is_set_on_arrival_other_ids_on_read() -> None:
    """A str id needs no structuring and is set at once; an int id goes through the hook."""
    assert vars(structure_fn(Job)({"id": "j1"})) == {"raw": {"id": "j1"}, "id": "j1"}
    numbered = structure_fn(Job)({"id": 7})
    assert "id" not in vars(numbered)
    assert numbered.id == "7"
    assert numbered == structure_eager({"id": 7}, Job)


# -- conformance to the OpenAPI document -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [1, None, True, "hello", [1, 2], {"unrelated": 1}, {}, {"type": 5}, 2**70],
    ids=repr,
)
def test_an_input_that_is_not_an_input_output_is_kept_as_sent(value: Any) -> None:
    """The document types Job.inputs as any object: a value that is not InputOutput-shaped
    reads as sent, neither refused nor turned into an empty JobIO."""
    raw = {"id": "j1", "inputs": {"x": value, "video": {"type": "sieve.Video", "data": {"u": 1}}}}
    for job in (structure_fn(Job)(raw), structure_eager(raw, Job)):
        assert job.inputs == {"x": value, "video": JobIO(type="sieve.Video", data={"u": 1})}
        assert type(job.inputs["x"]) is type(value)


@pytest.mark.parametrize(
    ("output", "where", "problem"),
    [
        ({"type": 5}, r"outputs\[0\]\.type", "expected a string, got an integer 5"),
        ({"is_optional": "no"}, r"outputs\[0\]\.is_optional", "expected a boolean, got a string"),
        ({"schema": []}, r"outputs\[0\]\.schema", "expected an object, got an array"),
        ("hello", r"outputs\[0\]:", r"expected an object \(JobIO\), got a string"),
        ([{"name": 3}], r"outputs\[0\]\[0\]\.name", "expected a string, got an integer 3"),
    ],
    ids=["type", "is_optional", "schema", "not-an-object", "nested"],
)
def test_a_value_of_the_wrong_json_type_is_refused_not_coerced(
    output: Any, where: str, problem: str
) -> None:
    """`{"type": 5}` is not '5' and `{"is_optional": "no"}` is not True: reading the field
    raises a SieveDecodeError naming the job, the field and where inside it, lazily and eagerly."""
    raw = {"id": "job-3", "status": "finished", "outputs": [output]}
    job = structure_fn(Job)(raw)
    assert job.status is JobStatus.FINISHED
    message = rf"field 'outputs' of Job 'job-3' at {where}.*{problem}"
    with pytest.raises(SieveDecodeError, match=message):
        _ = job.outputs
    with pytest.raises(SieveDecodeError, match=message):
        structure_eager(raw, Job)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("status", 5, "expected a string, got an integer 5"),
        ("status", None, "got null"),
        ("visibility", None, "got null"),
        ("function_id", 7, "expected a string, got an integer 7"),
        ("error", False, "expected a string, got a boolean false"),
        ("children", {"a": "text"}, r"at children\['a'\]: expected an array"),
        ("restarts", [{"type": 1}], r"at restarts\[0\]\.type: expected a string"),
        ("function", {"name": "f"}, r"at function\.owner_name: required field missing"),
        ("created_at", 1734226919, "expected an RFC 3339 date-time string, got an integer"),
    ],
)
def test_job_fields_refuse_other_json_types(field: str, value: Any, problem: str) -> None:
    """Each typed field of a Job refuses a value of another JSON type, null where the document
    does not allow it included, naming the job and the field."""
    job = structure_fn(Job)({"id": "j5", field: value})
    with pytest.raises(SieveDecodeError, match=rf"field '{field}' of Job 'j5'.*{problem}"):
        getattr(job, field)


def test_defaults_and_enums_follow_the_document() -> None:
    """restarts absent is [] (null stays None); enum values are enums, unknown ones strings;
    WorkerCounts and webhooks are typed."""
    assert structure_fn(Job)({"id": "j"}).restarts == []
    assert structure_fn(Job)({"id": "j", "restarts": None}).restarts is None
    stamp = "2024-12-15T01:41:59.195000"
    job = structure_fn(Job)(
        {
            "id": "j",
            "restarts": [
                {"timestamp": stamp, "reason": "spot", "type": "preemption", "run_id": None},
                {"timestamp": stamp, "reason": "?", "type": "thermal", "run_id": "r"},
            ],
        }
    )
    first, second = job.restarts or []
    assert first.type is RestartType.PREEMPTION
    assert second.type == "thermal" and type(second.type) is str
    assert first.timestamp == datetime(2024, 12, 15, 1, 41, 59, 195000, tzinfo=UTC)
    function = structure_fn(Function)(
        {
            "name": "f",
            "owner_name": "o",
            "function_type": "workflow",
            "webhooks": [{"type": "job.complete", "url": "https://h"}, {"type": "x", "url": "u"}],
            "latest_version": {"id": "v", "current_workers": {"starting": 1, "setup": None}},
        }
    )
    assert function.function_type is FunctionType.WORKFLOW
    assert function.webhooks == [
        Webhook(type=WebhookType.JOB_COMPLETE, url="https://h"),
        Webhook(type="x", url="u"),
    ]
    version = function.latest_version
    assert version is not None
    assert version.current_workers == WorkerCounts(starting=1, setup=None)
    assert structure_fn(Function)({"name": "f", "owner_name": "o"}).function_type is None


UTC_INSTANTS = [
    ("2024-12-15T01:41:59.195000", datetime(2024, 12, 15, 1, 41, 59, 195000, tzinfo=UTC)),
    ("2024-12-15t01:41:59z", datetime(2024, 12, 15, 1, 41, 59, tzinfo=UTC)),
    ("2024-12-15T01:41:59z", datetime(2024, 12, 15, 1, 41, 59, tzinfo=UTC)),
    ("2024-12-15t01:41:59+01:30", datetime(2024, 12, 15, 0, 11, 59, tzinfo=UTC)),
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("2016-12-31T15:59:60.5-08:00", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("2024-01-01T00:00:00.123456789z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ("2024-01-01T00:30:00-00:00", datetime(2024, 1, 1, 0, 30, tzinfo=UTC)),
    ("0001-01-01T00:00:00-23:59", datetime(1, 1, 1, 23, 59, tzinfo=UTC)),
    ("9999-12-31T23:59:59+23:59", datetime(9999, 12, 31, 0, 0, 59, tzinfo=UTC)),
]


@pytest.mark.parametrize(("text", "instant"), UTC_INSTANTS, ids=[t for t, _ in UTC_INSTANTS])
def test_every_rfc3339_form_reads_as_its_utc_instant(text: str, instant: datetime) -> None:
    """Lowercase t and z, offsets, -00:00, long fractions and leap seconds (read as the last
    microsecond before the next minute, so they still sort before it)."""
    job = structure_fn(Job)({"id": "j", "created_at": text, "restarts": [{"timestamp": text}]})
    assert job.created_at == instant
    assert job.created_at.tzinfo is UTC
    assert job.restarts == [Restart(timestamp=instant)]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0000-01-01T00:00:00Z", "has no year 0"),
        ("0001-01-01T00:00:00+00:01", "outside years 1 to 9999"),
        ("9999-12-31T23:59:59-00:01", "outside years 1 to 9999"),
        ("0001-01-01t00:00:00.5+00:01", "outside years 1 to 9999"),
    ],
)
def test_an_unrepresentable_date_time_fails_when_read_naming_job_and_field(
    text: str, why: str
) -> None:
    """Valid RFC 3339 that Python's datetime cannot hold raises a SieveDecodeError on read; the
    job's other fields still read."""
    job = structure_fn(Job)({"id": "job-0", "status": "queued", "started_at": text})
    assert job.status is JobStatus.QUEUED
    with pytest.raises(SieveDecodeError, match=rf"'started_at' of Job 'job-0'.*{why}"):
        _ = job.started_at
    assert job.completed_at is None


@pytest.mark.parametrize(
    "text", ["2024-02-30T00:00:00Z", "2024-01-01T00:00:00+24:00", "2024-01-01T24:00:61Z", ""]
)
def test_an_invalid_date_time_is_refused(text: str) -> None:
    """What is not a date-time at all stays an error."""
    job = structure_fn(Job)({"id": "j2", "created_at": text})
    with pytest.raises(SieveDecodeError, match=r"'created_at' of Job 'j2'.*not an RFC 3339"):
        _ = job.created_at
