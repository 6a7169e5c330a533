"""API-key authentication, shared by the request guard (before any body is read) and the
routes' dependencies (which reuse the guard's answer)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.runtime import Runtime
from core.tenancy import TenantContext, resolve_api_key

_TENANT_STATE = "ragkb_tenant"


class AuthenticationError(Exception):
    """No key, or one that names no caller (the message says which)."""


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


async def authenticate(runtime: Runtime, presented_key: str | None) -> TenantContext:
    """The key's tenant (recently verified keys from memory), or AuthenticationError."""
    if presented_key is None:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
    tenant = runtime.key_cache.get(presented_key)
    if tenant is None:
        tenant = await run_in_threadpool(_verify_key, runtime, presented_key)
    if tenant is None:
        raise AuthenticationError("unknown, revoked or expired API key")
    return tenant


def _verify_key(runtime: Runtime, presented_key: str) -> TenantContext | None:
    generation = runtime.key_cache.generation
    with runtime.session_factory() as session:
        tenant = resolve_api_key(session, presented_key=presented_key)
    if tenant is not None:
        runtime.key_cache.put(presented_key, tenant, generation=generation)
    return tenant


def remember_tenant(scope: MutableMapping[str, Any], tenant: TenantContext) -> None:
    """Keep the guard's answer on the request, so the routes do not verify the key again."""
    scope.setdefault("state", {})[_TENANT_STATE] = tenant


def remembered_tenant(scope: MutableMapping[str, Any]) -> TenantContext | None:
    tenant = scope.get("state", {}).get(_TENANT_STATE)
    return tenant if isinstance(tenant, TenantContext) else None
