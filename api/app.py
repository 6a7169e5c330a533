"""The FastAPI application factory."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from api.guard import RequestGuardMiddleware
from api.middleware import MetricsMiddleware, RequestIdMiddleware, SecurityHeadersMiddleware
from api.openai_errors import is_openai_path, openai_error_body, validation_error_body
from api.routers import (
    admin,
    documents,
    health,
    ingest,
    metrics,
    openai_compat,
    query,
    search,
    system,
)
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding_service import EmbeddingServiceError, EmbeddingUnavailableError
from core.settings import Settings
from core.telemetry import configure_tracing

DESCRIPTION = """
ragkb answers questions over a company's documents with citations that map back to document,
page and text span. Every `/v1` call needs `Authorization: Bearer <API key>`; the key alone
decides the tenant, and no call can see another tenant's data.
"""

_TEXT_OF_BYTES = {bytes: lambda raw: raw.decode("utf-8", errors="replace")}


def _json_safe(value: Any) -> Any:
    """`value` with what a JSON response cannot carry shown as text: an infinite or NaN float
    (JSON has neither), and a lone surrogate (a `\\ud800` escape is valid JSON syntax but no
    Unicode character, so it cannot be encoded as UTF-8) as its escape, in keys too."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; without a runtime, the lifespan migrates the database and builds one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        if owned:
            run_migrations(settings)
            app.state.runtime = Runtime.build(settings)
        else:
            app.state.runtime = runtime
        app.state.runtime.start()
        try:
            async with AsyncExitStack() as fronts:
                if mcp_front is not None:
                    await fronts.enter_async_context(mcp_front.running())
                yield
        finally:
            if owned:
                app.state.runtime.close()

    app = FastAPI(
        title="ragkb",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(documents.router)
    app.include_router(query.router)
    app.include_router(search.router)
    app.include_router(openai_compat.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(system.router)
    if settings.http.console_enabled:
        from api import console

        console.mount(app)
    mcp_front = None
    if settings.http.mcp_enabled:
        from api.mcp_front import MCP_PATH, McpFront

        mcp_front = McpFront(app)
        # An ASGI endpoint (not a FastAPI route): the MCP transport reads the body itself.
        app.router.routes.append(
            Route(MCP_PATH, endpoint=mcp_front, methods=["GET", "POST", "DELETE"])
        )

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> Response:
        # A database outage is the service's trouble, not the caller's: 503, never a hang.
        return _refusal(
            request, 503, f"database unavailable ({type(exc).__name__})", {"Retry-After": "5"}
        )

    @app.exception_handler(EmbeddingUnavailableError)
    async def embedding_unavailable(request: Request, exc: Exception) -> Response:
        # Every front that embeds a question (search, MCP and CLI through it) fails the same
        # way the reader's outage does: 503 with the reason, never a 500.
        return _refusal(request, 503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(EmbeddingServiceError)
    async def embedding_misconfigured(request: Request, exc: Exception) -> Response:
        return _refusal(request, 502, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own shape, but an echoed input JSON cannot carry (bytes that are not
        # UTF-8, a number like 1e999 read as infinity) is shown as text, rather than failing
        # the error response itself with a 500.
        errors = jsonable_encoder(exc.errors(), custom_encoder=_TEXT_OF_BYTES)
        if is_openai_path(request.url.path):
            return JSONResponse(validation_error_body(_json_safe(errors)), status_code=400)
        return JSONResponse({"detail": _json_safe(errors)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = _json_safe(exc.detail)  # a reason may name what the caller sent
        if is_openai_path(request.url.path) and exc.status_code >= 400:
            status = 400 if exc.status_code == 422 else exc.status_code
            body = openai_error_body(
                status,
                str(detail),
                param=getattr(exc, "param", None),
                code=getattr(exc, "code", None),
            )
            return JSONResponse(body, status_code=status, headers=exc.headers)
        if exc.status_code == 422 and isinstance(detail, str):
            # One shape for every 422, as the schema declares: a list of problems.
            problem = {"type": "value_error", "loc": ["body"], "msg": detail}
            return JSONResponse({"detail": [problem]}, status_code=422, headers=exc.headers)
        if detail is not exc.detail:
            exc = StarletteHTTPException(exc.status_code, detail, exc.headers)
        return await http_exception_handler(request, exc)

    # Innermost: every /v1 request is authenticated, its body bounded and checked, and heavy
    # routes admitted, before a route reads a byte of the body.
    app.add_middleware(RequestGuardMiddleware)
    # Inside the headers: it times the app (guard refusals included), not the headers around it.
    app.add_middleware(MetricsMiddleware)
    if settings.http.cors_allowed_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_allowed_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    provider = configure_tracing(settings.telemetry)
    if provider is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        # One trace per request; a caller's `traceparent` header joins the caller's trace.
        app.add_middleware(
            OpenTelemetryMiddleware, tracer_provider=provider, exclude_spans=["receive", "send"]
        )
    # Added last, so they run outermost: every response (errors and CORS preflights included)
    # gets the headers, and the request id is set before anything logs.
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def _refusal(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    """`{"detail": ...}`, with OpenAI's error object too on the OpenAI front's paths."""
    if is_openai_path(request.url.path):
        return JSONResponse(openai_error_body(status, detail), status_code=status, headers=headers)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
