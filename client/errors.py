"""Errors the client raises: one class per kind of API refusal, each carrying the API's reason."""

from __future__ import annotations

import httpx


class RagkbError(Exception):
    """Base of every error the ragkb client raises."""


class APIConnectionError(RagkbError):
    """The service could not be reached (refused, DNS, timeout before a response)."""


class APIError(RagkbError):
    """The service answered with an error status.

    `status_code` is the HTTP status, `detail` the API's reason (a string, or FastAPI's list of
    validation errors for a 422), `retry_after_s` the `Retry-After` header in seconds (429, 503),
    `response` the raw httpx response.
    """

    def __init__(self, response: httpx.Response, detail: object) -> None:
        self.response = response
        self.status_code = response.status_code
        self.detail = detail
        self.retry_after_s = _retry_after(response)
        super().__init__(f"{response.status_code}: {detail}")


class BadRequestError(APIError):
    """400 or 422: the request is malformed; `detail` says where."""


class AuthenticationError(APIError):
    """401: the key is missing, unknown, revoked or expired."""


class PermissionDeniedError(APIError):
    """403: the key lacks the scope the call needs (the detail names it)."""


class NotFoundError(APIError):
    """404: not in the caller's tenant."""


class ConflictError(APIError):
    """409: refused by the current state (e.g. a job with no failed file to retry)."""


class RequestTooLargeError(APIError):
    """413: over a size limit or the tenant's quota (the detail says which)."""


class RateLimitError(APIError):
    """429: the tenant's rate limit; retry after `retry_after_s`."""


class ServiceUnavailableError(APIError):
    """503: a dependency (database, vector store, reader) is down, or the service sheds load."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def raise_for_status(response: httpx.Response) -> None:
    """Raise the APIError subclass for an error response; return for a success."""
    if response.is_success:
        return
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text
    raise _BY_STATUS.get(response.status_code, APIError)(response, detail)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; ragkb sends seconds
