"""FastAPI dependencies as Annotated aliases: routes declare what they need."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import AuthenticationError, authenticate, remembered_tenant
from api.runtime import Runtime
from core.audit import AuditAction, Outcome, PendingEvent, event_by
from core.quotas import TenantLimits, effective_limits
from core.settings import Settings
from core.tenancy import Scope, TenantContext

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rkb_...`")


# Dependencies that do no blocking IO are `async def`: FastAPI runs a plain `def` dependency in the
# threadpool, a thread hop per dependency per request.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings_dep(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_tenant(request: Request, credentials: BearerDep) -> TenantContext:
    """The caller's tenant, from the API key alone (any scope)."""
    return await _authenticate(request, credentials)


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> TenantContext:
    """The tenant the request guard found for the key, or (outside the guard) the key's tenant,
    or 401."""
    tenant = remembered_tenant(request.scope)
    if tenant is not None:
        return tenant
    try:
        return await authenticate(
            request.app.state.runtime, credentials.credentials if credentials else None
        )
    except AuthenticationError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc


TenantDep = Annotated[TenantContext, Depends(get_tenant)]


async def record_off_request(runtime: Runtime, event: PendingEvent) -> None:
    """Audit a read-path event off the request; when the writer's queue is full, write it here."""
    if not runtime.audit_writer.submit(event):
        await run_in_threadpool(runtime.audit_writer.write_now, event)


async def _require_scope(tenant: TenantContext, scope: Scope, runtime: Runtime) -> None:
    if scope in tenant.scopes:
        return
    await record_off_request(
        runtime,
        event_by(tenant, AuditAction.SCOPE_DENIED, Outcome.DENIED, details={"needed": scope.value}),
    )
    granted = " ".join(sorted(s.value for s in tenant.scopes))
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"this key lacks the {scope.value!r} scope (it has: {granted})",
    )


async def _take_token(
    bucket: str, tenant: TenantContext, runtime: Runtime, limits: TenantLimits
) -> None:
    if bucket == "query":
        per_minute, burst = limits.queries_per_minute, limits.query_burst
    else:
        per_minute, burst = limits.ingest_per_minute, limits.ingest_burst
    limiter, key = runtime.rate_limiter, f"{bucket}:{tenant.tenant_id}"
    if limiter.blocking:
        wait_s = await run_in_threadpool(
            lambda: limiter.take(key, rate_per_s=per_minute / 60, burst=burst)
        )
    else:
        wait_s = limiter.take(key, rate_per_s=per_minute / 60, burst=burst)
    if wait_s > 0:
        runtime.metrics.rate_limited_total.labels(bucket=bucket).inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{bucket} rate limit of {per_minute:g}/min for this tenant reached; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )


def _caller(
    scope: Scope, bucket: str | None = None
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[TenantContext]]:
    """One dependency per kind of caller: key → tenant, scope, then a token from the tenant's
    bucket. One function rather than a chain of dependencies, because FastAPI resolves each
    dependency of a chain on every request, on the path whose overhead the latency bench counts.
    The scope is checked before the bucket, so a key without the scope is told so (403) without
    spending its tenant's tokens."""

    async def caller(request: Request, credentials: BearerDep) -> TenantContext:
        runtime: Runtime = request.app.state.runtime
        tenant = await _authenticate(request, credentials)
        await _require_scope(tenant, scope, runtime)
        if bucket is not None:
            limits = effective_limits(tenant.limits, runtime.settings.limits)
            await _take_token(bucket, tenant, runtime, limits)
        return tenant

    return caller


# Callers by what they may do.
AdminCaller = Annotated[TenantContext, Depends(_caller(Scope.ADMIN))]
ReadCaller = Annotated[TenantContext, Depends(_caller(Scope.READ))]
IngestCaller = Annotated[TenantContext, Depends(_caller(Scope.INGEST))]
QueryCaller = Annotated[TenantContext, Depends(_caller(Scope.QUERY, "query"))]
UploadCaller = Annotated[TenantContext, Depends(_caller(Scope.INGEST, "ingest"))]
