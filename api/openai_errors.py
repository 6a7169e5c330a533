"""Errors of the OpenAI-compatible front in the shape the OpenAI API reference gives them.

OpenAI's clients read an error from `{"error": {"message", "type", "param", "code"}}` (the
`openai` SDK sets `.param`, `.code` and `.type` of its exception from it) and expect an invalid
request, whatever is wrong with it, to be a 400 (`openai.BadRequestError`); FastAPI's 422 would
reach them as another exception class with no `param`. So on the OpenAI paths a refusal keeps
ragkb's `detail` (a string, as `ErrorOut`) and adds OpenAI's `error` object, and a request that
does not validate is a 400 naming the field. The other routes keep their own shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, Field

from api.schemas import ErrorOut, error_responses

# Routes whose callers are OpenAI clients.
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="Why the request was refused (the same as `detail`).")
    type: str = Field(
        description="invalid_request_error, authentication_error, permission_error, "
        "rate_limit_error or server_error."
    )
    param: str | None = Field(None, description="The refused field, e.g. `messages[0].content`.")
    code: str | None = Field(None, description="`model_not_found`, `invalid_api_key` or null.")


class OpenAIErrorOut(ErrorOut):
    """ragkb's reason (`detail`) and the same as OpenAI's error object (`error`)."""

    error: OpenAIErrorDetail


def is_openai_path(path: str) -> bool:
    """Whether a request path belongs to the OpenAI-compatible front."""
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


def openai_error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The error body of an OpenAI-front refusal with this HTTP status."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code is None and status == 401:
        code = "invalid_api_key"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return {"detail": message, "error": error}


def field_name(loc: Sequence[Any]) -> str | None:
    """A validation error's location as OpenAI names a parameter: `messages[0].role`; None for
    the body as a whole."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or None


def validation_error_body(errors: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A 400 body for a request that did not validate: every problem, each after its field's
    name, and the first field as `param`."""
    problems = [(field_name(e.get("loc", ())), str(e.get("msg", ""))) for e in errors]
    message = "; ".join(f"{name}: {msg}" if name else msg for name, msg in problems)
    first = next((name for name, _ in problems if name), None)
    return openai_error_body(400, message or "invalid request", param=first)


class OpenAIRequestError(HTTPException):
    """A refusal on the OpenAI front that names its field (`param`) and OpenAI's `code`."""

    def __init__(
        self, status_code: int, detail: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(status_code, detail)
        self.param = param
        self.code = code


def openai_error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an OpenAI-front route: ragkb's descriptions, OpenAI's body."""
    responses = error_responses(*codes)
    for response in responses.values():
        response["model"] = OpenAIErrorOut
    return responses
