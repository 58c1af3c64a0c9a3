"""sieve_async: read Sieve API job history at scale, from asyncio.

```python
from sieve_async import SieveClient

async with SieveClient() as sieve:
    async for job in sieve.list_function_jobs("sieve", "retalker", status="finished"):
        print(job.id, job.status, job.created_at)
```

The library logs to the ``sieve_async`` logger (each retry is one ``INFO`` record) and prints
nothing unless the application configures logging.
"""

import logging as _logging

from ._client import DEFAULT_BASE_URL, SieveClient
from ._exceptions import (
    SieveAPIError,
    SieveAuthenticationError,
    SieveClosedError,
    SieveConfigError,
    SieveConnectionError,
    SieveDecodeError,
    SieveError,
    SieveInvalidRequestError,
    SieveNotFoundError,
    SievePaginationError,
    SievePermissionError,
    SieveRateLimitError,
    SieveServerError,
    SieveTimeoutError,
)
from ._export import ExportResult
from ._exporter import export
from ._fanout import FanOut
from ._models import (
    Function,
    FunctionRef,
    FunctionType,
    FunctionVersion,
    Job,
    JobIO,
    JobStatus,
    Page,
    Restart,
    RestartType,
    Webhook,
    WebhookType,
    WorkerCounts,
)
from ._paginator import AsyncPaginator
from ._transport import ClientStats

__version__ = "0.1.0"

# A library's only logging set-up: without it, Python's last-resort handler would print the
# package's warnings to stderr of an application that never asked for them.
_logging.getLogger("sieve_async").addHandler(_logging.NullHandler())

__all__ = [
    "AsyncPaginator",
    "ClientStats",
    "DEFAULT_BASE_URL",
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
]
