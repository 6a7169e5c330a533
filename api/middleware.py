"""Pure ASGI middleware (streaming-safe, no task or stream per request): request ids, security
headers, request metrics."""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import request_id_var
from core.metrics import error_kind

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is honoured only when it is short and plain, so it cannot forge log lines.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# The API serves JSON only: nothing may be framed, scripted or loaded from it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The interactive docs load Swagger UI / ReDoc from their CDN.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
# The console: its own script and style only, no inline code, nothing from another origin. A
# document's text that slipped into the page unescaped still could not run.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
CONSOLE_PREFIX = "/console"


class RequestIdMiddleware:
    """Honour X-Request-ID (or make one), echo it, and expose it to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = _header(scope, b"x-request-id")
        request_id = (
            presented if presented and _SAFE_REQUEST_ID.match(presented) else uuid.uuid4().hex
        )
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class SecurityHeadersMiddleware:
    """Headers every response carries; authenticated responses are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authenticated = _header(scope, b"authorization") is not None
        path: str = scope["path"]
        if path in DOCS_PATHS:
            csp = DOCS_CSP
        elif path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
            csp = CONSOLE_CSP
        else:
            csp = API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Content-Security-Policy"] = csp
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if authenticated:
                    # Answers hold tenant data: no shared or private cache may keep them.
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class MetricsMiddleware:
    """Latency until the response starts, and error counts, by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_observed)

    @staticmethod
    def _observe(scope: Scope, status_code: int, seconds: float) -> None:
        runtime = getattr(scope["app"].state, "runtime", None)
        if runtime is None:
            return
        kind = error_kind(status_code)
        if kind is not None:
            runtime.metrics.http_errors_total.labels(kind=kind).inc()
        # The matched route's path template (set by the router), so the label set stays bounded.
        route = getattr(scope.get("route"), "path", "unmatched")
        runtime.metrics.http_request_seconds.labels(
            method=scope["method"], route=str(route), status=f"{status_code // 100}xx"
        ).observe(seconds)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
