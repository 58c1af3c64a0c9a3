"""`FakeSieve`: an in-process Sieve API server to test against, as ``moto`` is for AWS.

```python
from sieve_async import SieveClient
from sieve_async.testing import FakeSieve

async with FakeSieve(functions={"sieve/retalker": 1234}, page_cap=100) as fake:
    async with SieveClient(api_key=fake.api_key, base_url=fake.url) as sieve:
        jobs = await sieve.list_function_jobs("sieve", "retalker").collect()
```

It serves the five listings with deterministic job histories (the same ``seed`` gives the same
jobs) and any job they hold by id (``GET /v2/jobs/{job_id}``), in either response shape, with a
page-size cap, latency, the API-key check, error bodies shaped like the real API's (FastAPI
``{"detail": ...}``), injectable faults (`Faults`), a list that moves while it is read
(`Mutations`), and a log of every request it served (`requests`).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import random
import re
import time
import uuid
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol, overload
from urllib.parse import unquote

import attrs
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._exceptions import SieveConnectionError
from ._http import Request, Response
from ._paging import Shape

__all__ = [
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "TRANSIENT_FAULTS",
    "FakeSieve",
    "Faults",
    "InMemoryTransport",
    "Mutations",
    "RequestRecord",
    "Shape",
    "make_job",
]

DEFAULT_API_KEY: Final = "sk-fake-sieve-0123456789abcdef"
STATUSES: Final = ("finished", "finished", "finished", "error", "processing", "queued", "cancelled")
#: Everything `Faults` can inject.
TRANSIENT_FAULTS: Final = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "drop",
    "truncate",
    "non_json",
    "slow",
)
#: Everything `Faults` can inject: the transient kinds a retry gets past, and kinds that no
#: retry cures (a 403, a body of the wrong shape, a ``next_offset`` that does not advance).
FAULT_KINDS: Final = (*TRANSIENT_FAULTS, "403", "wrong_shape", "stuck")
_EPOCH: Final = datetime(2025, 6, 1, tzinfo=UTC)
#: How many bytes of encoded jobs a server keeps to serve again (see `_Kept`).
_KEPT_BYTES: Final = 24 << 20


@attrs.frozen
class Faults:
    """Failures to inject into listing requests, reproducibly.

    Args:
        rate: the share of requests that fail, drawn from ``kinds`` with a ``seed``-ed RNG.
        kinds: which faults to draw from (default: `TRANSIENT_FAULTS`; see `FAULT_KINDS`).
        schedule: request numbers (0-based, counting listing requests) mapped to a fault kind.
        seed: seeds the RNG that picks which requests fail and how.
        retry_after: the ``Retry-After`` header of injected 429s (``None`` to omit it).
        slow_seconds: the extra latency of a ``slow`` fault.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = TRANSIENT_FAULTS
    schedule: Mapping[int, str] = attrs.field(factory=dict)
    seed: int = 0
    retry_after: str | None = "0"
    slow_seconds: float = 0.05

    def __attrs_post_init__(self) -> None:
        unknown = {*self.kinds, *self.schedule.values()} - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")


@attrs.frozen
class Mutations:
    """Changes to job listings while they are read, counted in served job-listing pages.

    Args:
        insert_every: after every this many pages, ``insert_count`` new jobs land at the head of
            the listing that was read.
        insert_count: how many jobs each insertion adds.
        remove_every: after every this many pages, one job leaves that listing.
        remove: which job leaves: ``"random"`` (any, by ``seed``), ``"read"`` (one already
            served, the case that shifts unread jobs to lower offsets) or ``"head"``.
        seed: seeds the choice of the job that leaves.
    """

    insert_every: int = 0
    insert_count: int = 1
    remove_every: int = 0
    remove: Literal["random", "read", "head"] = "random"
    seed: int = 0


@attrs.define
class RequestRecord:
    """One request FakeSieve served."""

    index: int
    method: str
    path: str
    query: dict[str, str]
    sent_api_key: bool
    started: float
    ended: float = 0.0
    status: int = 0
    fault: str | None = None
    items: int = 0


def _job_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _uuid4s(raw: bytes) -> list[str]:
    """Version-4 UUIDs from each 16 bytes of ``raw``, as `uuid.UUID(bytes=..., version=4)`
    writes them (formatted here: this runs for every job served)."""
    digits = raw.hex()
    return [
        f"{digits[at : at + 8]}-{digits[at + 8 : at + 12]}-4{digits[at + 13 : at + 16]}-"
        f"{'89ab'[int(digits[at + 16], 16) & 3]}{digits[at + 17 : at + 20]}-"
        f"{digits[at + 20 : at + 32]}"
        for at in range(0, len(digits), 32)
    ]


def _naive(moment: datetime) -> str:
    # The live API's form (and the document's examples): UTC, no offset, microseconds.
    if moment.tzinfo is not None:
        moment = moment.replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def _with_offset(moment: datetime) -> str:
    # The form the document's ``date-time`` format asks for (RFC 3339: an offset is required).
    return _naive(moment) + "+00:00"


#: How timestamps are written, by `FakeSieve`'s ``timestamps`` option.
_STAMPS: Final[dict[str, Callable[[datetime], str]]] = {"naive": _naive, "offset": _with_offset}


_BUCKET: Final = "sieve-au-fn-iter-out-us-central1-persistent-bucket.storage.googleapis.com"


def _job_body(
    *,
    ids: tuple[str, str, str, str],
    owner: str,
    function: str,
    function_id: str,
    status: str,
    created: datetime,
    start_delay_ms: int,
    run_seconds: int,
    slow_factor: int,
    caption: bool,
    stamp: Callable[[datetime], str] = _naive,
) -> dict[str, Any]:
    """A job shaped like the seed page's example (about 800 bytes); ``ids`` are the job's id,
    its run id's second half, and the input and output file names."""
    job_id, run_half, input_name, output_name = ids
    started = created + timedelta(milliseconds=start_delay_ms)
    completed = started + timedelta(seconds=run_seconds)
    done = status in ("finished", "error", "cancelled")
    outputs: list[Any] = []
    if status == "finished":
        outputs = [
            {
                "type": "sieve.Video",
                "name": None,
                "data": {"url": f"https://{_BUCKET}/{job_id}/{output_name}.mp4", "_path": None},
                "description": None,
            }
        ]
        if caption:
            outputs.append(
                [{"type": "str", "name": "caption", "data": "a caption", "description": None}]
            )
    return {
        "id": job_id,
        "function_id": function_id,
        "organization_id": "0a8c2e51-3f0b-4c8e-9b5d-7e2f4d1a6c90",
        "function": {"name": function, "owner_name": owner},
        "status": status,
        "created_at": stamp(created),
        "started_at": None if status == "queued" else stamp(started),
        "completed_at": stamp(completed) if done else None,
        "inputs": {
            "video": {
                "type": "sieve.Video",
                "name": "video",
                "data": {"url": f"https://storage.googleapis.com/uploads/{input_name}.mp4"},
                "description": None,
            },
            "slow_factor": {
                "type": "int",
                "name": "slow_factor",
                "data": slow_factor,
                "description": None,
            },
        },
        "outputs": outputs,
        "error": "Traceback: worker ran out of memory" if status == "error" else "",
        "visibility": "private",
        "run_id": f"{job_id}-{run_half}",
        "restarts": [],
    }


def make_job(
    rng: random.Random, owner: str, function: str, created: datetime, function_id: str
) -> dict[str, Any]:
    """A realistic job object, shaped like the seed page's example (about 800 bytes)."""
    job_id = _job_id(rng)
    status = rng.choice(STATUSES)
    start_delay_ms = rng.randint(20, 900)
    run_seconds = rng.randint(2, 600)
    output_name = _job_id(rng) if status == "finished" else ""
    caption = status == "finished" and rng.random() < 0.2
    input_name = _job_id(rng)
    slow_factor = rng.randint(1, 4)
    return _job_body(
        ids=(job_id, _job_id(rng), input_name, output_name),
        owner=owner,
        function=function,
        function_id=function_id,
        status=status,
        created=created,
        start_delay_ms=start_delay_ms,
        run_seconds=run_seconds,
        slow_factor=slow_factor,
        caption=caption,
    )


# -- variety: the full range the OpenAPI document allows ---------------------------------------

#: Offsets (minutes east of UTC) a varied timestamp may carry besides ``Z`` and ``+00:00``.
_OFFSETS: Final = (330, -420, 840, -720, 1, -30)
#: Inputs that are not ``InputOutput`` objects: the document types ``inputs`` as any object.
_LOOSE_INPUTS: Final[tuple[tuple[str, Any], ...]] = (
    ("count", 3),
    ("threshold", 0.5),
    ("enabled", True),
    ("note", "hello"),
    ("nothing", None),
    ("frames", [1, 2, 3]),
    ("options", {"lang": "en", "beam": 5}),
    ("typed", {"type": None, "name": "typed", "data": None, "is_optional": True, "schema": {}}),
)


def _any_stamp(rng: random.Random) -> Callable[[datetime], str]:
    """A way to write one job's times, drawn from what RFC 3339 and the live API allow: no
    offset, ``Z``, ``+00:00``, another offset (the same moment, local), lowercase ``t`` and
    ``z``, milliseconds only."""
    style = rng.randrange(6)
    minutes = rng.choice(_OFFSETS)

    def stamp(moment: datetime) -> str:
        if style == 0:
            return _naive(moment)
        if style == 1:
            return _naive(moment) + "Z"
        if style == 2:
            return _with_offset(moment)
        if style == 3:
            sign = "+" if minutes >= 0 else "-"
            local = _naive(moment + timedelta(minutes=minutes))
            return f"{local}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        if style == 4:
            return _naive(moment).replace("T", "t") + "z"
        return moment.isoformat(timespec="milliseconds") + "Z"

    return stamp


def _vary(
    job: dict[str, Any], rng: random.Random, stamp: Callable[[datetime], str], created: datetime
) -> dict[str, Any]:
    """``job`` with what else the document allows, drawn from ``rng``: nulls, ``children``,
    restarts, inputs of any JSON type, integers beyond 64 bits."""
    draw = rng.random
    if draw() < 0.1:
        job["function"] = None
    if job["error"] == "" and draw() < 0.15:
        job["error"] = None
    if draw() < 0.05:
        job["run_id"] = None
    if draw() < 0.2:
        job["children"] = {"segments": [rng.randint(0, 9), None, "part", {"id": job["id"]}]}
    elif draw() < 0.05:
        job["children"] = None
    if draw() < 0.25:
        job["restarts"] = [
            {
                "timestamp": stamp(created + timedelta(seconds=number + 1)),
                "reason": rng.choice(("node preempted", "out of memory", "worker error")),
                "type": rng.choice(("preemption", "OOM", "error")),
                "run_id": rng.choice((job["run_id"], None)),
            }
            for number in range(rng.randint(1, 3))
        ]
    elif draw() < 0.05:
        job["restarts"] = None
    if draw() < 0.4:
        job["inputs"].update(rng.sample(_LOOSE_INPUTS, rng.randint(1, 3)))
    if draw() < 0.15:
        # Past 64 bits, where a decoder that only knows machine integers loses digits.
        job["inputs"]["seed"] = 2**64 + rng.getrandbits(40)
        job["inputs"]["slow_factor"]["data"] = -(2**70) - rng.getrandbits(8)
    if job["outputs"] and draw() < 0.2:
        job["outputs"][0].update(schema=None, run_id=job["run_id"], is_optional=None)
    if draw() < 0.02:
        job["created_at"] = None
    return job


def _encode(job: dict[str, Any]) -> bytes:
    try:
        # orjson's bytes keep the whole buffer it wrote into (about 8 KiB for an 800-byte
        # job): copied, a kept job costs its length.
        return bytes(memoryview(orjson.dumps(job)))
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits: the standard library writes every digit.
        return json.dumps(job, separators=(",", ":")).encode()


#: The statuses a listing can filter on, by the one-byte code a listing keeps per job.
_CODES: Final = ("finished", "error", "processing", "queued", "cancelled")
#: Random bytes to status codes, weighted as `STATUSES` (a byte is reduced modulo its length).
_TO_CODE: Final = bytes(_CODES.index(STATUSES[b % len(STATUSES)]) for b in range(256))
#: The spacing of a listing's jobs: job ``i`` is created between ``i`` and ``i + 1`` gaps
#: before the listing's newest moment, so that where a moment falls is one division away.
_GAP_US: Final = 1_800_000_000
_UNIX: Final = datetime(1970, 1, 1)
_TOP_US: Final = (_EPOCH.replace(tzinfo=None) - _UNIX) // timedelta(microseconds=1)


def _moment(us: int) -> datetime:
    """A moment in microseconds since 1970, as a naive UTC datetime."""
    return _UNIX + timedelta(microseconds=us)


class _Kept:
    """Encoded jobs kept to serve again, up to a byte budget shared by a server's listings.

    Nothing is evicted: the first jobs read fill it, and rereading them (a benchmark's rounds,
    a test's second pass) costs no generation; a reader of millions of jobs reads most of them
    made anew, in bounded memory.
    """

    #: What a kept job costs beyond its bytes: its key, the dict slot, the bytes object.
    OVERHEAD: Final = 160

    def __init__(self, budget: int) -> None:
        self.room = budget
        self._jobs: dict[tuple[int, int], bytes] = {}

    def get(self, key: tuple[int, int]) -> bytes | None:
        return self._jobs.get(key)

    def offer(self, key: tuple[int, int], encoded: bytes) -> None:
        cost = len(encoded) + self.OVERHEAD
        if cost <= self.room:
            self._jobs[key] = encoded
            self.room -= cost


@attrs.frozen(eq=False)
class _Inserted:
    """A job put at the head of a listing after it was made (kept whole: they are few)."""

    created_us: int
    code: int
    job: dict[str, Any]
    encoded: bytes


class _Listing:
    """One function's jobs, newest first, each made when asked for from (seed, function, index).

    The listing keeps one status byte per job (so that a status filter knows its jobs without
    making them), the jobs inserted at its head since, and the indexes of the jobs removed.
    """

    def __init__(
        self,
        owner: str,
        name: str,
        count: int,
        seed: int,
        *,
        pool_size: int | None = None,
        number: int = 0,
        kept: _Kept | None = None,
        stamp: Callable[[datetime], str] = _naive,
        variety: bool = False,
    ) -> None:
        self.owner = owner
        self.stamp = stamp
        self.variety = variety
        self.number = number
        self._kept = kept if kept is not None else _Kept(0)
        self.name = name
        self.count = count
        self._key = hashlib.blake2b(f"{seed}/{owner}/{name}".encode(), digest_size=32).digest()
        rng = random.Random(self._key)
        self.function_id, self.version_id = _uuid4s(rng.randbytes(32))
        self._pool = max(1, count if pool_size is None else min(count, pool_size))
        statuses = rng.randbytes(self._pool).translate(_TO_CODE)
        statuses = (statuses * -(-count // self._pool))[:count]
        self._statuses = statuses
        self.head: list[_Inserted] = []
        self.removed: list[int] = []
        self._inserts = 0
        self._matches: dict[int, array[int]] = {}
        self._views: dict[int | None, _View] = {}
        self._id_starts: bytes | None = None

    # -- one job -----------------------------------------------------------------------------

    def _digest(self, index: int, size: int, person: bytes) -> bytes:
        return hashlib.blake2b(
            index.to_bytes(8, "little"), digest_size=size, key=self._key, person=person
        ).digest()

    def created_us(self, index: int) -> int:
        """When job ``index`` was created, in microseconds since 1970 (strictly decreasing)."""
        jitter = int.from_bytes(self._digest(index, 8, b"created")) % (_GAP_US // 1000)
        return _TOP_US - index * _GAP_US - jitter * 1000

    def count_created_ge(self, moment_us: int) -> int:
        """How many of the made jobs (removed or not) were created at or after ``moment_us``."""
        if moment_us > _TOP_US:
            return 0
        below = (_TOP_US - moment_us) // _GAP_US
        if below >= self.count:
            return self.count
        return below + (self.created_us(below) >= moment_us)

    def code(self, index: int) -> int:
        return self._statuses[index]

    def _made_id(self, serial: int) -> str:
        return _uuid4s(self._digest(serial, 64, b"job")[:16])[0]

    def index_of(self, job_id: str) -> int | None:
        """The index of the made job with id ``job_id`` (removed or not), or None.

        Ids are digests, so the first lookup makes the first six bytes of each distinct job's
        id (six bytes a job, kept); a lookup is then a search of those bytes. A pooled copy's
        id ends in its index (see `_made`), which is read back from it.
        """
        if self._id_starts is None:
            distinct = range(min(self._pool, self.count))
            self._id_starts = b"".join(self._digest(s, 64, b"job")[:6] for s in distinct)
        try:
            start = bytes.fromhex(job_id[:8] + job_id[9:13])
        except ValueError:
            return None
        at = self._id_starts.find(start)
        while at >= 0:
            if at % 6 == 0 and self._made_id(at // 6) == job_id:
                return at // 6
            at = self._id_starts.find(start, at + 1)
        tail = job_id[-12:]
        if self._pool < self.count and re.fullmatch("[0-9a-f]{12}", tail):
            index = int(tail, 16)
            slot = self._made_id(index % self._pool)
            if self._pool <= index < self.count and slot[:-12] == job_id[:-12]:
                return index
        return None

    def find(self, job_id: str) -> _Inserted | int | None:
        """The job with id ``job_id`` in the listing now (an inserted one, or the index of a
        made one), or None: never made, or removed since."""
        for entry in self.head:
            if entry.job["id"] == job_id:
                return entry
        index = self.index_of(job_id)
        if index is None:
            return None
        at = bisect_left(self.removed, index)
        return None if at < len(self.removed) and self.removed[at] == index else index

    def _made(self, index: int, serial: int, created_us: int, status: str) -> dict[str, Any]:
        """The job made for ``serial`` (its index, or its pool slot), created at ``created_us``."""
        raw = self._digest(serial, 64, b"job")
        small = self._digest(serial, 8, b"details")
        ids = _uuid4s(raw)
        if serial != index:
            ids[0] = ids[0][:-12] + f"{index:012x}"
        vary = random.Random(self._digest(index, 16, b"variety")) if self.variety else None
        stamp = self.stamp if vary is None else _any_stamp(vary)
        created = _moment(created_us)
        job = _job_body(
            ids=(ids[0], ids[1], ids[2], ids[3]),
            owner=self.owner,
            function=self.name,
            function_id=self.function_id,
            status=status,
            created=created,
            start_delay_ms=20 + int.from_bytes(small[0:2]) % 881,
            run_seconds=2 + int.from_bytes(small[2:4]) % 599,
            slow_factor=1 + small[4] % 4,
            caption=small[5] < 51,
            stamp=stamp,
        )
        return job if vary is None else _vary(job, vary, stamp, created)

    def function_app(self) -> dict[str, Any]:
        """The function as ``GET /v2/functions`` lists it."""
        app: dict[str, Any] = {
            "name": self.name,
            "owner_name": self.owner,
            "visibility": "private",
            "title": self.name.title(),
            "description": f"The {self.name} function",
            "tags": ["video"],
            "function_type": "function",
        }
        if self.variety and self.number % 2:
            app.update(visibility=None, title=None, description=None, tags=None)
            app.update(function_type=None, latest_version=None, restart_on_error=None)
        elif self.variety:
            app.update(function_type="workflow", examples=[], readme="# Readme")
            app.update(code_url=None, cover_image_url=None, webhooks=None, restart_on_error=True)
        return app

    def version(self) -> dict[str, Any]:
        """The function's one version, as its versions listing has it."""
        stamp = _any_stamp(random.Random(self._key)) if self.variety else self.stamp
        version: dict[str, Any] = {
            "id": self.version_id,
            "build_status": "ready",
            "queued_at": stamp(datetime(2025, 5, 1, 10, 0)),
            "built_at": stamp(datetime(2025, 5, 1, 10, 4)),
            "ready_at": stamp(datetime(2025, 5, 1, 10, 5)),
            "compute_type": "a100",
            "python_packages": ["torch"],
            "system_packages": ["ffmpeg"],
            "gpu": True,
            "split": 1,
            "inputs": [{"type": "sieve.Video", "name": "video"}],
            "outputs": [{"type": "sieve.Video"}],
            "environment_variables": [],
            "function_dependencies": [],
        }
        if self.variety:
            workers = {"starting": 0, "setup": None, "active": 2, "idle": 1}
            version.update(cuda_version=None, maximum_replicas=None, stream_output=None)
            version.update(current_workers={**workers, "awaiting_resources": None})
            version.update(
                built_at=None,
                environment_variables=[{"name": "HF_TOKEN", "description": None, "default": None}],
            )
        return version

    def job(self, index: int) -> dict[str, Any]:
        """Job ``index`` of the listing as it was made (before any insertion)."""
        return self._made(
            index, index % self._pool, self.created_us(index), _CODES[self._statuses[index]]
        )

    def encoded(self, index: int) -> bytes:
        key = (self.number, index)
        found = self._kept.get(key)
        if found is None:
            found = _encode(self.job(index))
            self._kept.offer(key, found)
        return found

    # -- views and changes -------------------------------------------------------------------

    def matches(self, code: int) -> array[int]:
        """The indexes of the made jobs in status ``code``, ascending (made once, when asked)."""
        found = self._matches.get(code)
        if found is None:
            found = array("q")
            needle = bytes([code])
            at = self._statuses.find(needle)
            while at >= 0:
                found.append(at)
                at = self._statuses.find(needle, at + 1)
            self._matches[code] = found
        return found

    def view(self, status: str | None) -> _View:
        """The listing as served with ``status`` (any string: one outside `_CODES` matches none)."""
        code = None if not status else _CODES.index(status) if status in _CODES else -1
        found = self._views.get(code)
        if found is None:
            found = self._views[code] = _View(self, code)
        return found

    def insert(self, count: int) -> None:
        current = self.view(None)
        newest = current.created_us(0) if len(current) else _TOP_US
        for _ in range(count):
            serial = self.count + self._inserts
            self._inserts += 1
            small = self._digest(serial, 8, b"inserted")
            newest += (1 + small[0] % 60) * 1_000_000
            code = _TO_CODE[small[1]]
            job = self._made(serial, serial, newest, _CODES[code])
            self.head.insert(0, _Inserted(newest, code, job, _encode(job)))
        self._views.clear()

    def remove(self, entry: _Inserted | int) -> dict[str, Any]:
        """Take one job (an inserted one, or a made one by index) out of the listing."""
        if isinstance(entry, _Inserted):
            self.head.remove(entry)
            job = entry.job
        else:
            insort(self.removed, entry)
            job = self.job(entry)
        self._views.clear()
        return job


class _View(Sequence[bytes]):
    """A listing as served for one status filter: its encoded jobs, newest first."""

    def __init__(self, listing: _Listing, code: int | None) -> None:
        self.listing = listing
        self.head = [e for e in listing.head if code is None or e.code == code]
        self.base: Sequence[int]
        if code is None:
            self.base = range(listing.count)
            self.gaps = list(listing.removed)
        elif code < 0:
            self.base, self.gaps = (), []
        else:
            self.base = listing.matches(code)
            self.gaps = [
                bisect_left(self.base, index)
                for index in listing.removed
                if listing.code(index) == code
            ]

    def __len__(self) -> int:
        return len(self.head) + len(self.base) - len(self.gaps)

    def entry(self, position: int) -> _Inserted | int:
        """The inserted job at ``position``, or the index of the made job there."""
        if position < len(self.head):
            return self.head[position]
        wanted = position - len(self.head)
        # The least base position with ``wanted`` kept positions before it is a fixed point
        # of this step, reached from below.
        at = wanted
        while (following := wanted + bisect_right(self.gaps, at)) != at:
            at = following
        return self.base[at]

    def created_us(self, position: int) -> int:
        entry = self.entry(position)
        if isinstance(entry, _Inserted):
            return entry.created_us
        return self.listing.created_us(entry)

    def count_created_ge(self, moment_us: int) -> int:
        """How many of the served jobs were created at or after ``moment_us``."""
        head = sum(1 for e in self.head if e.created_us >= moment_us)
        made = self.listing.count_created_ge(moment_us)
        if not isinstance(self.base, range):
            made = bisect_left(self.base, made)
        return head + made - bisect_left(self.gaps, made)

    def job(self, position: int) -> dict[str, Any]:
        entry = self.entry(position)
        return entry.job if isinstance(entry, _Inserted) else self.listing.job(entry)

    def _encoded(self, position: int) -> bytes:
        entry = self.entry(position)
        return entry.encoded if isinstance(entry, _Inserted) else self.listing.encoded(entry)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self._encoded(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._encoded(index)


class _Merged(Sequence[bytes]):
    """Several views as ``GET /v2/jobs`` lists them: newest first, ties in function order.

    A page at any offset is found without walking the ones before it: each job has a distinct
    key (its creation moment, then its function's place), and how many jobs have a key at or
    above a given one is a sum of one count per view, so the page's start is a binary search.
    """

    def __init__(self, views: Sequence[_View]) -> None:
        self.views = [view for view in views if len(view)]
        self._length = sum(len(view) for view in self.views)

    def __len__(self) -> int:
        return self._length

    def _key(self, number: int, created_us: int) -> int:
        width = len(self.views)
        return created_us * width + (width - 1 - number)

    def _counts_at_or_above(self, key: int) -> list[int]:
        width = len(self.views)
        return [
            view.count_created_ge(-((width - 1 - number - key) // width))
            for number, view in enumerate(self.views)
        ]

    def _starts(self, rank: int) -> list[int]:
        """Where each view stands after the first ``rank`` jobs of the merged listing."""
        if rank >= self._length:
            return [len(view) for view in self.views]
        low = min(self._key(n, v.created_us(len(v) - 1)) for n, v in enumerate(self.views))
        high = max(self._key(n, v.created_us(0)) for n, v in enumerate(self.views)) + 1
        while low < high:
            middle = (low + high) // 2
            if sum(self._counts_at_or_above(middle)) <= rank:
                high = middle
            else:
                low = middle + 1
        return self._counts_at_or_above(low)

    def positions(self, start: int, stop: int) -> list[tuple[_View, int]]:
        """The view and position of each job from ``start`` to ``stop`` (not included)."""
        stop = min(stop, self._length)
        if start >= stop:
            return []

        def walk(number: int, first: int) -> Iterator[tuple[int, int, int]]:
            view = self.views[number]
            for position in range(first, len(view)):
                yield -self._key(number, view.created_us(position)), number, position

        merged = heapq.merge(*(walk(n, first) for n, first in enumerate(self._starts(start))))
        return [(self.views[n], p) for _, n, p in itertools.islice(merged, stop - start)]

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            if step != 1:
                raise ValueError("a merged listing is read in steps of one")
            return [view[position] for view, position in self.positions(start, stop)]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        view, position = self.positions(index, index + 1)[0]
        return view[position]


class _Asked(Protocol):
    """What the handlers read of a request: an aiohttp one, or an in-memory `_Call`."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def path_qs(self) -> str: ...
    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def match_info(self) -> Mapping[str, str]: ...


@attrs.frozen
class _Call:
    """A request handed to the handlers without a socket (see `InMemoryTransport`)."""

    path: str
    path_qs: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    match_info: Mapping[str, str]
    method: str = "GET"


class _HangUp(Exception):
    """An in-memory answer the server would have cut off (a ``drop`` or ``truncate`` fault)."""


#: The routes FakeSieve serves: path pattern and handler name, for aiohttp and for the
#: in-memory transport alike.
_ROUTES: Final = (
    ("/v2/functions", "_functions"),
    ("/v2/jobs", "_all_jobs"),
    ("/v2/jobs/{job_id}", "_job"),
    ("/v2/functions/{owner}/{name}/jobs", "_jobs"),
    ("/v2/functions/{owner}/{name}/versions", "_versions"),
    ("/v2/functions/{owner}/{name}/versions/{version}/jobs", "_jobs"),
)
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,4000}")
_ROUTE_PATTERNS: Final = tuple(
    (re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), handler)
    for path, handler in _ROUTES
)


def _query_number(
    query: Mapping[str, str], name: str, default: int, maximum: int | None
) -> int | web.Response:
    """One integer query parameter, or the 422 a validating API answers for it.

    The document gives ``limit`` and ``offset`` no minimum, so any integer is accepted; an
    empty value is not an integer (FastAPI answers ``?limit=`` with 422 too).
    """
    raw = query.get(name)
    if raw is None:
        return default
    if _INTEGER.fullmatch(raw) is None:
        return _invalid(
            name,
            raw,
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        )
    number = int(raw)
    if maximum is not None and number > maximum:
        return _invalid(
            name, raw, f"Input should be less than or equal to {maximum}", "less_than_equal"
        )
    return number


def _detail(status: int, detail: Any) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"detail": detail}), content_type="application/json"
    )


def _invalid(loc: str, value: str, message: str, kind: str) -> web.Response:
    # FastAPI's 422 body: {"detail": [{"loc": [...], "msg": ..., "type": ..., "input": ...}]}
    return _detail(422, [{"loc": ["query", loc], "msg": message, "type": kind, "input": value}])


class FakeSieve:
    """An in-process Sieve API server on a loopback port.

    Args:
        functions: ``"owner/name"`` mapped to how many jobs its history holds.
        shape: ``None`` serves each listing in the shape the API uses today (job listings as
            ``{"data", "next_offset"}`` envelopes, functions and versions as bare arrays);
            ``"envelope"`` or ``"bare"`` forces one shape on every listing.
        page_cap: the most items one page holds, whatever ``limit`` asks; a sequence of caps
            applies one per listing request, in turn (a server whose cap varies).
        default_limit: the page length when a request sends no ``limit`` (the API's is 500).
        max_limit: a ``limit`` above this is refused with 422, as a validating API would.
        latency: seconds each request takes before it is answered.
        api_key: the key requests must carry as ``X-API-Key``; ``None`` accepts any request.
        seed: seeds the job histories.
        faults: failures to inject (`Faults`).
        mutations: changes to apply while listings are read (`Mutations`).
        redirect_to: answer every listing request with a 307 to this origin instead.
        timestamps: ``"naive"`` writes UTC times without an offset, as the live API and the
            document's examples do; ``"offset"`` adds ``+00:00``, as the document's
            ``date-time`` format (RFC 3339) asks.
        variety: serve the full range the OpenAPI document allows, drawn from the seed (the
            same seed serves the same bytes): times with ``Z``, ``+00:00``, other offsets,
            lowercase ``t``/``z`` or none; null ``function``, ``error``, ``run_id``,
            ``created_at``, ``children`` and ``restarts``; ``children``; restarts; inputs of any
            JSON type beside ``InputOutput`` objects; integers beyond 64 bits; functions and
            versions with their optional fields null or filled. Off by default, so that a
            history is what the live API usually sends.
        pool_size: make at most this many distinct jobs per function; a longer history repeats
            their contents, each copy with an id of its own and a creation time in order. Not
            needed for memory: jobs are made when served, so a listing of millions costs about
            one byte per job whatever this is.
        host: the address to listen on (loopback).
        port: the port, or 0 for any free one.
    """

    def __init__(
        self,
        *,
        functions: Mapping[str, int] | None = None,
        shape: Shape | None = None,
        page_cap: int | Sequence[int] | None = None,
        default_limit: int = 500,
        max_limit: int | None = None,
        latency: float = 0.0,
        api_key: str | None = DEFAULT_API_KEY,
        seed: int = 0,
        faults: Faults | None = None,
        mutations: Mutations | None = None,
        redirect_to: str | None = None,
        pool_size: int | None = None,
        timestamps: Literal["naive", "offset"] = "naive",
        variety: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if functions is None:
            functions = {"sieve/retalker": 1234, "sieve/whisper": 321, "acme/transcribe": 57}
        if shape not in (None, "envelope", "bare"):
            raise ValueError("shape must be None, 'envelope' or 'bare'")
        if timestamps not in _STAMPS:
            raise ValueError("timestamps must be 'naive' or 'offset'")
        self._stamp = _STAMPS[timestamps]
        self.variety = variety
        if pool_size is not None and pool_size < 1:
            raise ValueError("pool_size must be a positive number of jobs or None")
        self.shape = shape
        self.page_cap = page_cap
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.latency = latency
        self.api_key = api_key
        self.faults = faults or Faults()
        self.mutations = mutations or Mutations()
        self.redirect_to = redirect_to
        self.host = host
        self.port = port
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.removed: list[str] = []
        self.inserted: list[str] = []
        self._fault_rng = random.Random(self.faults.seed)
        self._mutation_rng = random.Random(self.mutations.seed)
        self._listing_requests = 0
        self._pages_served = 0
        self._listings: dict[tuple[str, str], _Listing] = {}
        kept = _Kept(_KEPT_BYTES)
        for number, (spec, count) in enumerate(functions.items()):
            owner, _, name = spec.partition("/")
            self._listings[(owner, name)] = _Listing(
                owner,
                name,
                count,
                seed,
                pool_size=pool_size,
                number=number,
                kept=kept,
                stamp=self._stamp,
                variety=variety,
            )
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSieve:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _app(self) -> web.Application:
        app = web.Application()
        for path, handler in _ROUTES:
            app.router.add_get(path, getattr(self, handler))
        return app

    async def start(self) -> None:
        """Start listening; `url` is valid afterwards."""
        self._runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The base URL to give `SieveClient`."""
        return f"http://{self.host}:{self.port}"

    def transport(self) -> InMemoryTransport:
        """A transport answering from this server in this process, without sockets.

        ``SieveClient(api_key=fake.api_key, base_url=fake.url, transport=fake.transport())``
        reads the same listings, faults and mutations as over HTTP, in a fraction of the time.
        The server need not be started. A dropped or cut-short answer arrives as the
        `SieveConnectionError` a socket would have given; redirects to another origin fail.
        """
        return InMemoryTransport(self)

    # -- what the tests look at --------------------------------------------------------------

    def jobs(self, function: str, status: str | None = None) -> list[dict[str, Any]]:
        """The current listing of ``owner/name`` (newest first), as the server would serve it."""
        owner, _, name = function.partition("/")
        view = self._listings[(owner, name)].view(status)
        return [view.job(position) for position in range(len(view))]

    def all_jobs(self) -> list[dict[str, Any]]:
        """Every job of every function, as ``GET /v2/jobs`` lists them (newest first)."""
        merged = self._merged(None)
        return [view.job(position) for view, position in merged.positions(0, len(merged))]

    def _merged(self, status: str | None) -> _Merged:
        return _Merged([listing.view(status) for listing in self._listings.values()])

    @property
    def functions(self) -> list[str]:
        """The ``owner/name`` of each function served."""
        return [f"{owner}/{name}" for owner, name in self._listings]

    def listing_requests(self) -> list[RequestRecord]:
        """The requests for job listings (the ones faults and mutations count)."""
        return [r for r in self.requests if r.path.endswith("/jobs")]

    def insert_jobs(self, function: str, count: int) -> None:
        """Put ``count`` new jobs at the head of a function's listing now."""
        owner, _, name = function.partition("/")
        self._insert(self._listings[(owner, name)], count)

    def _insert(self, listing: _Listing, count: int) -> None:
        listing.insert(count)
        self.inserted.extend(entry.job["id"] for entry in listing.head[:count])

    def remove_job(self, function: str, index: int) -> str:
        """Take the job at ``index`` out of a function's listing now; return its id."""
        owner, _, name = function.partition("/")
        listing = self._listings[(owner, name)]
        view = listing.view(None)
        if not -len(view) <= index < len(view):
            raise IndexError(f"{function} has {len(view)} jobs; there is no job {index}")
        job = listing.remove(view.entry(index % len(view)))
        self.removed.append(job["id"])
        return str(job["id"])

    # -- handlers ----------------------------------------------------------------------------

    def _record(self, request: _Asked) -> RequestRecord:
        record = RequestRecord(
            index=len(self.requests),
            method=request.method,
            path=request.path,
            query=dict(request.query),
            sent_api_key="X-API-Key" in request.headers,
            started=time.monotonic(),
        )
        self.requests.append(record)
        return record

    def _authorised(self, request: _Asked) -> bool:
        return self.api_key is None or request.headers.get("X-API-Key") == self.api_key

    def _window(self, request: _Asked) -> tuple[int, int] | web.Response:
        """The offset and length of the page asked for, or the 422 for the query.

        A ``limit`` of 0 or below asks for no jobs; an ``offset`` below 0 reads from the head.
        """
        query = request.query
        limit = _query_number(query, "limit", self.default_limit, self.max_limit)
        if isinstance(limit, web.Response):
            return limit
        offset = _query_number(query, "offset", 0, None)
        if isinstance(offset, web.Response):
            return offset
        cap = self.page_cap
        if isinstance(cap, Sequence):
            cap = cap[self._pages_served % len(cap)] if cap else None
        if cap is not None:
            limit = min(limit, cap)
        return max(offset, 0), max(limit, 0)

    def _serve(
        self,
        window: tuple[int, int],
        items: Sequence[bytes],
        *,
        envelope: bool,
        listing: _Listing | None = None,
        status: str | None = None,
    ) -> web.StreamResponse:
        offset, limit = window
        page = items[offset : offset + limit]
        body = b"[" + b",".join(page) + b"]"
        if envelope:
            end = offset + len(page) >= len(items)
            next_offset = -1 if end else offset + len(page)
            body = b'{"data":' + body + b',"next_offset":' + str(next_offset).encode() + b"}"
        response = web.Response(body=body, content_type="application/json")
        if listing is not None:
            self._pages_served += 1
            self._mutate(listing, status, offset + len(page))
        return response

    def _mutate(self, listing: _Listing, status: str | None, read_up_to: int) -> None:
        plan = self.mutations
        served = self._pages_served
        if plan.insert_every and served % plan.insert_every == 0:
            self._insert(listing, plan.insert_count)
        if plan.remove_every and served % plan.remove_every == 0:
            view = listing.view(status)
            if not view:
                return
            if plan.remove == "head":
                victim = 0
            elif plan.remove == "read":
                victim = self._mutation_rng.randrange(max(1, min(read_up_to, len(view))))
            else:
                victim = self._mutation_rng.randrange(len(view))
            self.removed.append(listing.remove(view.entry(victim))["id"])

    def _shape_is_envelope(self, native: bool) -> bool:
        return native if self.shape is None else self.shape == "envelope"

    async def _begin(self, request: _Asked, *, listing: bool) -> web.StreamResponse | None:
        """Latency, auth, faults and redirects common to every route; None to go on."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if not self._authorised(request):
            return _detail(401, "Unauthorized - valid API Key required.")
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to.rstrip("/") + request.path_qs)
        if not listing:
            return None
        number = self._listing_requests
        self._listing_requests += 1
        fault = self.faults.schedule.get(number)
        if fault is None and self.faults.rate and self._fault_rng.random() < self.faults.rate:
            fault = self._fault_rng.choice(self.faults.kinds)
        if fault is None:
            return None
        self.requests[-1].fault = fault
        return await self._inject(request, fault)

    async def _inject(self, request: _Asked, fault: str) -> web.StreamResponse | None:
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
            return None
        if fault == "429":
            headers = (
                {} if self.faults.retry_after is None else {"Retry-After": self.faults.retry_after}
            )
            response = _detail(429, "Rate limit exceeded, slow down")
            response.headers.update(headers)
            return response
        if fault in ("500", "502", "503", "504"):
            return _detail(int(fault), "Internal server error")
        if fault == "403":
            return _detail(403, "This API key may not read this function's jobs")
        if fault == "wrong_shape":
            return web.json_response({"jobs": [], "total": 0})
        if fault == "stuck":
            offset = request.query.get("offset", "0")
            body = b'{"data":[],"next_offset":' + offset.encode() + b"}"
            return web.Response(body=body, content_type="application/json")
        if fault == "non_json":
            return web.Response(
                status=200,
                body=b"<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        if not isinstance(request, web.Request):
            raise _HangUp(fault)
        transport = request.transport
        if fault == "drop":
            if transport is not None:
                transport.abort()
            return web.Response(status=204)
        # truncate: promise a body, send half of it, hang up.
        body = b'{"data": [' + b'{"id": "truncated"},' * 64
        stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        stream.content_length = len(body) * 2
        await stream.prepare(request)
        await stream.write(body)
        if transport is not None:
            transport.abort()
        return stream

    async def _guarded(
        self, request: _Asked, handler: Any, *, listing: bool, query: Any = None
    ) -> web.StreamResponse:
        """``handler`` of what ``query`` (default: `_window`) reads of the request, with the
        latency, auth, faults and request log every route shares."""
        record = self._record(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # As FastAPI does: the key, then the query, then the handler (which may 404).
            early = await self._begin(request, listing=listing)
            read = self._window if query is None else query
            window = read(request) if early is None else early
            response: web.StreamResponse = (
                window if isinstance(window, web.StreamResponse) else await handler(window)
            )
            record.status = response.status
            return response
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        finally:
            record.ended = time.monotonic()
            self.in_flight -= 1

    def _listing_of(self, request: _Asked) -> _Listing | web.Response:
        owner = request.match_info["owner"]
        name = request.match_info["name"]
        listing = self._listings.get((owner, name))
        if listing is None:
            return _detail(404, "Function not found.")
        return listing

    async def _jobs(self, request: _Asked) -> web.StreamResponse:
        """A function's jobs, or (with a ``version`` in the path) one version's."""

        async def handle(window: tuple[int, int]) -> web.StreamResponse:
            listing = self._listing_of(request)
            if isinstance(listing, web.Response):
                return listing
            version = request.match_info.get("version")
            if version not in (None, "latest") and not listing.version_id.startswith(version):
                return _detail(404, "Function version not found.")
            status = request.query.get("status") or None
            items = listing.view(status)
            return self._serve(
                window,
                items,
                envelope=self._shape_is_envelope(True),
                listing=listing,
                status=status,
            )

        return await self._guarded(request, handle, listing=True)

    async def _job(self, request: _Asked) -> web.StreamResponse:
        """One job by id, without the first ``offset`` of its outputs (a negative ``offset``
        excludes none); 404 for a job no listing holds now."""

        def outputs_offset(request: _Asked) -> int | web.Response:
            return _query_number(request.query, "offset", 0, None)

        async def handle(offset: int) -> web.StreamResponse:
            job_id = request.match_info["job_id"]
            for listing in self._listings.values():
                entry = listing.find(job_id)
                if entry is not None:
                    break
            else:
                return _detail(404, "Job not found.")
            if offset <= 0:
                body = entry.encoded if isinstance(entry, _Inserted) else listing.encoded(entry)
            else:
                job = entry.job if isinstance(entry, _Inserted) else listing.job(entry)
                body = _encode({**job, "outputs": job["outputs"][offset:]})
            return web.Response(body=body, content_type="application/json")

        return await self._guarded(request, handle, listing=False, query=outputs_offset)

    async def _all_jobs(self, request: _Asked) -> web.StreamResponse:
        async def handle(window: tuple[int, int]) -> web.StreamResponse:
            items = self._merged(request.query.get("status") or None)
            return self._serve(window, items, envelope=self._shape_is_envelope(True))

        return await self._guarded(request, handle, listing=True)

    async def _functions(self, request: _Asked) -> web.StreamResponse:
        async def handle(window: tuple[int, int]) -> web.StreamResponse:
            items = [orjson.dumps(listing.function_app()) for listing in self._listings.values()]
            return self._serve(window, items, envelope=self._shape_is_envelope(False))

        return await self._guarded(request, handle, listing=False)

    async def _versions(self, request: _Asked) -> web.StreamResponse:
        async def handle(window: tuple[int, int]) -> web.StreamResponse:
            listing = self._listing_of(request)
            if isinstance(listing, web.Response):
                return listing
            items = [orjson.dumps(listing.version())]
            return self._serve(window, items, envelope=self._shape_is_envelope(False))

        return await self._guarded(request, handle, listing=False)


class InMemoryTransport:
    """Sends a client's requests straight to a `FakeSieve`'s handlers; see `FakeSieve.transport`."""

    def __init__(self, fake: FakeSieve) -> None:
        self._fake = fake

    async def aclose(self) -> None:
        """Nothing to release: there is no connection."""

    async def send(self, request: Request) -> Response:
        """Answer ``request`` as the server would, without a socket."""
        fake = self._fake
        url = request.url if request.params is None else request.url.with_query(request.params)
        if url.origin() != URL(fake.url).origin():
            raise SieveConnectionError(f"GET {url}: the in-memory FakeSieve serves {fake.url} only")
        call, handler = self._route(url, request.headers)
        # A socket always suspends the sender at least once, on the way out and on the way
        # back; so does this, or a reader would run further ahead than over HTTP.
        await asyncio.sleep(0)
        try:
            answer: web.StreamResponse = await handler(call)
        except web.HTTPException as exc:
            answer = exc
        except _HangUp as hang_up:
            raise SieveConnectionError(f"GET {url}: the server hung up ({hang_up})") from None
        await asyncio.sleep(0)
        body = answer.body if isinstance(answer, web.Response) else b""
        if not isinstance(body, bytes):  # pragma: no cover - every handler answers with bytes
            raise TypeError(f"FakeSieve answered {type(body).__name__}, not bytes")
        return Response(answer.status, CIMultiDictProxy(CIMultiDict(answer.headers)), body, url)

    def _route(self, url: URL, headers: Mapping[str, str]) -> tuple[_Call, Any]:
        for pattern, name in _ROUTE_PATTERNS:
            found = pattern.match(url.raw_path)
            if found is not None:
                match_info = {k: unquote(v) for k, v in found.groupdict().items()}
                handler = getattr(self._fake, name)
                break
        else:
            match_info, handler = {}, _not_found
        call = _Call(
            path=url.path,
            path_qs=url.raw_path_qs,
            query=url.query,
            headers=CIMultiDictProxy(CIMultiDict(headers)),
            match_info=match_info,
        )
        return call, handler


async def _not_found(request: _Asked) -> web.StreamResponse:
    return web.json_response({"detail": "Not Found"}, status=404)
