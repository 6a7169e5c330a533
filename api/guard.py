"""The request guard: what every `/v1` and `/mcp` request passes before any route reads its body.

In order: the API key (401 before a byte of the body is read), the body's size (413 on its
Content-Length, or as soon as the stream passes the limit), the body's encoding (400 unless
UTF-8 without lone surrogate escapes: every `/v1` body but an upload is JSON, and so is every
MCP message; a JSON object naming a key twice is refused too), then, for the routes that run
the encoder, the vector store or the reader, a slot of the admission gate (503/429 with
Retry-After past it; MCP tools pass it through the `/v1` routes they call).
Multipart uploads to `POST /v1/ingest/jobs` are bounded by the job's own limits, in the route,
while they stream.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import AuthenticationError, authenticate, bearer_key, remember_tenant
from api.openai_errors import is_openai_path, openai_error_body
from core.admission import OverloadedError, Refusal

UPLOAD_PATH = "/v1/ingest/jobs"
# The MCP front (api.mcp_front.MCP_PATH) takes JSON-RPC bodies: bounded and checked like /v1's.
MCP_PATH = "/mcp"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The routes whose work is the encoder, the vector store and the reader.
GATED_PATHS = frozenset({"/v1/query", "/v1/search", "/v1/chat/completions"})


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not _guarded(path):
            await self.app(scope, receive, send)
            return
        runtime = getattr(scope["app"].state, "runtime", None)
        if runtime is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            tenant = await authenticate(runtime, bearer_key(headers.get("authorization")))
        except AuthenticationError as exc:
            await _error(scope, send, 401, str(exc), {"WWW-Authenticate": "Bearer"})
            return
        except (DBAPIError, PoolTimeoutError) as exc:
            # Outside the app's exception handlers: the same answer they give.
            await _error(
                scope,
                send,
                503,
                f"database unavailable ({type(exc).__name__})",
                {"Retry-After": "5"},
            )
            return
        remember_tenant(scope, tenant)

        # Only these methods carry a body here; the other routes never read one.
        if scope["method"] in _BODY_METHODS and not _is_upload(scope, headers):
            limit = runtime.settings.http.max_body_bytes
            declared = _content_length(headers)
            if declared is None and "content-length" in headers:
                await _error(scope, send, 400, "Content-Length is not a number")
                return
            if declared is not None and declared > limit:
                await _error(scope, send, 413, _too_large(limit))
                return
            body = await _read_body(receive, limit)
            if body is None:
                await _error(scope, send, 413, _too_large(limit))
                return
            if body:
                reason = _not_utf8(body) or _lone_surrogate(body)
                if reason is None and _is_json(headers):
                    reason = _repeated_key(body)
                if reason is not None:
                    await _error(scope, send, 400, reason)
                    return
            receive = _replay(body, receive)

        if scope["method"] != "POST" or path not in GATED_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            admitted_at = await runtime.admission.acquire(tenant.tenant_id)
        except OverloadedError as exc:
            runtime.metrics.shed_total.labels(reason=exc.refusal.value).inc()
            status = 429 if exc.refusal is Refusal.TENANT else 503
            await _error(scope, send, status, str(exc), {"Retry-After": str(exc.retry_after_s)})
            return
        try:
            # Held until the response is sent in full (a streamed answer included).
            await self.app(scope, receive, send)
        finally:
            runtime.admission.release(tenant.tenant_id, admitted_at)


def _guarded(path: str) -> bool:
    return path in ("/v1", MCP_PATH) or path.startswith(("/v1/", MCP_PATH + "/"))


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _is_upload(scope: Scope, headers: dict[str, str]) -> bool:
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return (
        scope["method"] == "POST"
        and scope["path"] == UPLOAD_PATH
        and media_type == "multipart/form-data"
    )


def _content_length(headers: dict[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (RAGKB_HTTP__MAX_BODY_BYTES)"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes (the rest is never read)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the route sees an empty body and nobody reads it
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _not_utf8(body: bytes) -> str | None:
    """Why a JSON body cannot be read as text, or None (RFC 8259: JSON is UTF-8)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"the body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}); "
            "send JSON encoded as UTF-8"
        )
    return None


# A `\uD800`-`\uDFFF` escape and the backslashes before it (an even number escape each other).
_SURROGATE_ESCAPE = re.compile(rb"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")
_LOW_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _lone_surrogate(body: bytes) -> str | None:
    """Why a JSON body is not Unicode text, or None: a `\\ud800` escape that is not half of a
    surrogate pair is valid JSON syntax but no character (RFC 8259 §8.2). Pydantic lets it
    into unconstrained string fields, and from there it broke the tokenizer, the reader's
    request and the error response itself (500s); refused here for every route at once."""
    if b"\\u" not in body:
        return None
    paired_low_at = -1
    for match in _SURROGATE_ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            continue  # an escaped backslash, then the letter u
        escape_at = match.end(1) - 1
        if int(match.group(2), 16) < 0xDC00:  # a high surrogate: a low one must follow
            if _LOW_SURROGATE_ESCAPE.match(body, match.end()):
                paired_low_at = match.end()
                continue
        elif escape_at == paired_low_at:
            continue
        return (
            f"the body holds a lone surrogate escape (\\u{match.group(2).decode()} at offset "
            f"{escape_at}), which is no Unicode character; send JSON text that is Unicode"
        )
    return None


class _RepeatedKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKeyError(key)
        seen[key] = value
    return seen


def _is_json(headers: dict[str, str]) -> bool:
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _repeated_key(body: bytes) -> str | None:
    """Why a JSON body is ambiguous, or None: an object naming a key twice. Parsers keep the
    last (Python's) or the first; for `principals` that decided who may read, e.g.
    `{"principals": ["group:finance"], "principals": null}` read as no end user at all. A
    body that is not JSON is left to the route, which says why (422)."""
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except _RepeatedKeyError as exc:
        return f"the JSON body names the key {exc.args[0]!r} twice in one object"
    except (ValueError, RecursionError):
        return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body: what the server says next (a disconnect, for streamed answers).
        return await receive()

    return replay


async def _error(
    scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    payload = (
        openai_error_body(status, detail)
        if is_openai_path(scope.get("path", ""))
        else {"detail": detail}
    )
    body = json.dumps(payload).encode()
    raw_headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    start: dict[str, Any] = {"type": "http.response.start", "status": status}
    await send({**start, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
