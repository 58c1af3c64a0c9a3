"""sieve_async: read Sieve API job history at scale, from asyncio.

```python
from sieve_async import SieveClient

async with SieveClient() as sieve:
    async for job in sieve.list_function_jobs("sieve", "retalker", status="finished"):
        print(job.id, job.status, job.created_at)
```
"""

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

__version__ = "0.1.0"

__all__ = [
    "AsyncPaginator",
    "DEFAULT_BASE_URL",
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
]
