"""A typed Python client for the ragkb API, sync and async.

    from client import RagkbClient
    with RagkbClient("http://127.0.0.1:8000", api_key) as kb:
        job = kb.upload([("hr/handbook.md", Path("handbook.md"))])
        kb.wait_for_job(job.id)
        answer = kb.query("How many vacation days do employees get?")

Responses are the API's own pydantic models (`api.schemas`); errors are `client.errors` classes.
"""

from client.aio import AsyncRagkbClient
from client.calls import QueryEvent
from client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RagkbError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
)
from client.sync import RagkbClient

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncRagkbClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "QueryEvent",
    "RagkbClient",
    "RagkbError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
]
