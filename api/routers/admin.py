"""The admin API: a tenant's keys, limits and audit log (scope `admin`); every tenant for the
operator tenant's admins."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.orm import Session

from api.deps import AdminCaller, RuntimeDep, SessionDep, SettingsDep
from api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    AuditEventOut,
    AuditPage,
    IdPath,
    IssuedKeyOut,
    KeyIn,
    KeyList,
    KeyOut,
    LimitsIn,
    LimitsOut,
    TenantIn,
    TenantList,
    TenantOut,
    TenantSettingsIn,
    error_responses,
)
from core.audit import AuditAction, list_events, record, record_by
from core.models import ApiKey, Tenant
from core.quotas import effective_limits, tenant_usage
from core.settings import Settings
from core.tenancy import (
    ApiKeyNotFoundError,
    LimitOverrides,
    TenantContext,
    TenantExistsError,
    TenantNotFoundError,
    as_utc,
    create_tenant,
    get_tenant,
    issue_api_key,
    key_requires_principals,
    key_scopes,
    list_api_keys,
    list_tenants,
    parse_scopes,
    revoke_api_key,
    set_tenant_limits,
    set_tenant_require_principals,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _key_out(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id, name=row.name, scopes=sorted(s.value for s in key_scopes(row)),
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
        key_prefix=row.lookup_prefix, require_principals=row.require_principals,
        requires_principals=key_requires_principals(row),
    )  # fmt: skip


def _tenant_out(session: Session, tenant: Tenant, settings: Settings) -> TenantOut:
    overrides = LimitOverrides.of(tenant)
    usage = tenant_usage(session, tenant_id=tenant.id)
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        created_at=as_utc(tenant.created_at),
        limits=LimitsOut(**vars(effective_limits(overrides, settings.limits))),
        overrides=LimitsIn(**vars(overrides)),
        documents=usage.documents,
        stored_bytes=usage.stored_bytes,
        require_principals=tenant.require_principals,
    )


@router.get("/keys", response_model=KeyList, responses=error_responses(*AUTH_ERRORS))
def list_keys(caller: AdminCaller, session: SessionDep) -> KeyList:
    """The tenant's keys, revoked and expired ones included (never the secrets)."""
    return KeyList(keys=[_key_out(r) for r in list_api_keys(session, tenant_id=caller.tenant_id)])


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedKeyOut,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS),
    summary="Create a key for the caller's tenant; the key is shown once",
)
def create_key(body: KeyIn, caller: AdminCaller, session: SessionDep) -> IssuedKeyOut:
    try:
        scopes = parse_scopes(body.scopes)
        tenant = get_tenant(session, tenant_id=caller.tenant_id)
        issued = issue_api_key(
            session, tenant=tenant, key_name=body.name, scopes=scopes, expires_at=body.expires_at,
            require_principals=body.require_principals,
        )  # fmt: skip
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    record_by(
        session, caller, AuditAction.KEY_CREATE, target=issued.api_key_id,
        details={"scopes": " ".join(sorted(s.value for s in scopes)),
                 "require_principals": body.require_principals},
    )  # fmt: skip
    session.commit()
    row = session.get(ApiKey, issued.api_key_id)
    assert row is not None
    return IssuedKeyOut(**_key_out(row).model_dump(), key=issued.plaintext)


@router.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
    summary="Revoke one of the tenant's keys (at once, for good)",
)
def revoke_key(
    key_id: IdPath, caller: AdminCaller, session: SessionDep, runtime: RuntimeDep
) -> Response:
    try:
        revoke_api_key(session, tenant_id=caller.tenant_id, api_key_id=key_id)
    except ApiKeyNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    record_by(session, caller, AuditAction.KEY_REVOKE, target=key_id)
    session.commit()
    # Refused from the next request on in this process (other replicas: within the cache TTL).
    runtime.key_cache.clear()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tenant", response_model=TenantOut, responses=error_responses(*AUTH_ERRORS))
def read_own_tenant(caller: AdminCaller, session: SessionDep, settings: SettingsDep) -> TenantOut:
    """The caller's tenant: its effective limits, its overrides and its usage."""
    return _tenant_out(session, get_tenant(session, tenant_id=caller.tenant_id), settings)


@router.put(
    "/tenant/settings",
    response_model=TenantOut,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS),
    summary="Change the caller's tenant's own settings (require end-user principals)",
)
def put_own_tenant_settings(
    body: TenantSettingsIn,
    caller: AdminCaller,
    session: SessionDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
) -> TenantOut:
    """`require_principals`: the default for the tenant's keys without a setting of their own
    (a tenant's admins may tighten their own access, unlike their limits). Applies from the next
    request in this process; other replicas within the key cache's TTL."""
    tenant = get_tenant(session, tenant_id=caller.tenant_id)
    set_tenant_require_principals(session, tenant=tenant, required=body.require_principals)
    record_by(session, caller, AuditAction.TENANT_SETTINGS, details=body.model_dump())
    session.commit()
    # Verified keys carry the setting: drop them so the next request reads it.
    runtime.key_cache.clear()
    return _tenant_out(session, tenant, settings)


@router.get(
    "/audit",
    response_model=AuditPage,
    responses=error_responses(*AUTH_ERRORS, 422),
    summary="The tenant's audit log, newest first",
)
def read_audit_log(
    caller: AdminCaller,
    session: SessionDep,
    runtime: RuntimeDep,
    action: Annotated[
        str | None, Query(pattern=r"^[a-z.]{1,40}$", description="e.g. `query`")
    ] = None,
    since: Annotated[datetime | None, Query(description="Events at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Events before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPage:
    # Searches are audited off the request: this process's own events are written first.
    runtime.audit_writer.flush()
    rows = list_events(
        session, tenant_id=caller.tenant_id, action=action, since=since, until=until,
        limit=limit + 1, offset=offset,
    )  # fmt: skip
    return AuditPage(
        events=[
            AuditEventOut(
                id=e.id,
                at=as_utc(e.at),
                api_key_id=e.api_key_id,
                principal=e.principal,
                action=e.action,
                outcome=e.outcome,
                target=e.target,
                details=json.loads(e.details),
            )
            for e in rows[:limit]
        ],
        next_offset=offset + limit if len(rows) > limit else None,
    )


def _operator(caller: TenantContext, settings: Settings) -> None:
    # Limits and tenants are the operator's, not a tenant's: a tenant admin raising its own
    # quota would make quotas pointless.
    if settings.operator_tenant is None or caller.tenant_name != settings.operator_tenant:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "only an admin key of the operator tenant (RAGKB_OPERATOR_TENANT) manages tenants",
        )


@router.get("/tenants", response_model=TenantList, responses=error_responses(*AUTH_ERRORS))
def read_tenants(caller: AdminCaller, session: SessionDep, settings: SettingsDep) -> TenantList:
    """Every tenant (operator only)."""
    _operator(caller, settings)
    return TenantList(tenants=[_tenant_out(session, t, settings) for t in list_tenants(session)])


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantOut,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS, 409),
    summary="Create a tenant (operator only)",
)
def add_tenant(
    body: TenantIn, caller: AdminCaller, session: SessionDep, settings: SettingsDep
) -> TenantOut:
    _operator(caller, settings)
    try:
        tenant = create_tenant(session, name=body.name)
    except TenantExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    record(
        session, tenant_id=tenant.id, action=AuditAction.TENANT_CREATE,
        api_key_id=caller.api_key_id, details={"by_tenant": caller.tenant_id},
    )  # fmt: skip
    session.commit()
    return _tenant_out(session, tenant, settings)


@router.put(
    "/tenants/{tenant_id}/limits",
    response_model=TenantOut,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS, 404),
    summary="Set a tenant's own limits (operator only)",
)
def put_tenant_limits(
    tenant_id: IdPath,
    body: LimitsIn,
    caller: AdminCaller,
    session: SessionDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
) -> TenantOut:
    _operator(caller, settings)
    try:
        tenant = get_tenant(session, tenant_id=tenant_id)
    except TenantNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such tenant") from exc
    set_tenant_limits(session, tenant=tenant, limits=LimitOverrides(**body.model_dump()))
    # Recorded on the changed tenant's log, so its admins see who changed their limits.
    record(
        session, tenant_id=tenant.id, action=AuditAction.TENANT_LIMITS,
        api_key_id=caller.api_key_id,
        details=body.model_dump() | {"by_tenant": caller.tenant_id},
    )  # fmt: skip
    session.commit()
    # Verified keys carry their tenant's limits: the new ones apply from the next request.
    runtime.key_cache.clear()
    return _tenant_out(session, tenant, settings)
