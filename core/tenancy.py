"""Tenants and API keys: keys are shown once, stored hashed, compared in constant time.

A key carries scopes (what it may do) and may expire. Keys are never deleted, only revoked, so
the audit log's key ids keep meaning something.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import ApiKey, Tenant, utcnow

KEY_SCHEME = "rkb"


class Scope(StrEnum):
    """What a key may do; routes declare the one they need."""

    ADMIN = "admin"  # the tenant's own keys, limits (read) and audit log
    INGEST = "ingest"  # upload files, delete documents
    QUERY = "query"  # answers, chat completions, conversations
    READ = "read"  # list documents, follow jobs, search


# Given to keys created without --scope, and (by migration 0003) to keys made before scopes
# existed: everything a key could do before, but not the admin API, which must be asked for.
DEFAULT_SCOPES: frozenset[Scope] = frozenset({Scope.INGEST, Scope.QUERY, Scope.READ})
ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


class TenantExistsError(ValueError):
    pass


class TenantNotFoundError(LookupError):
    pass


class ApiKeyNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class LimitOverrides:
    """A tenant's own limits; None means the configured default applies."""

    queries_per_minute: float | None = None
    ingest_per_minute: float | None = None
    max_documents: int | None = None
    max_stored_bytes: int | None = None
    # Requests the tenant may send at once; None: about a minute of its rate (capped by the
    # configured default burst).
    query_burst: int | None = None
    ingest_burst: int | None = None

    @classmethod
    def of(cls, tenant: Tenant) -> LimitOverrides:
        return cls(
            queries_per_minute=tenant.queries_per_minute,
            ingest_per_minute=tenant.ingest_per_minute,
            max_documents=tenant.max_documents,
            max_stored_bytes=tenant.max_stored_bytes,
            query_burst=tenant.query_burst,
            ingest_burst=tenant.ingest_burst,
        )


@dataclass(frozen=True)
class TenantContext:
    """Who is calling: decided by the API key alone, never by the request's URL or body."""

    tenant_id: str
    tenant_name: str
    api_key_id: str
    scopes: frozenset[Scope] = DEFAULT_SCOPES
    limits: LimitOverrides = field(default_factory=LimitOverrides)
    key_expires_at: datetime | None = None
    # Queries, searches and chat completions must carry the end user's principals (400 if not):
    # the key's own setting, or its tenant's when the key has none.
    require_principals: bool = False


@dataclass(frozen=True)
class IssuedKey:
    api_key_id: str
    tenant_name: str
    plaintext: str  # shown once, never stored
    scopes: frozenset[Scope] = DEFAULT_SCOPES
    expires_at: datetime | None = None


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scope names (comma or space separated are split) to scopes; unknown names are refused."""
    names = {part for value in values for part in value.replace(",", " ").split()}
    unknown = sorted(names - {s.value for s in Scope})
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {_scope_list(Scope)}")
    if not names:
        raise ValueError("a key needs at least one scope")
    return frozenset(Scope(n) for n in names)


def _scope_list(scopes: Iterable[Scope]) -> str:
    return " ".join(sorted(s.value for s in scopes))


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _hash_secret(secret: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough; no slow KDF is needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(session: Session, *, name: str) -> Tenant:
    """Add a tenant; the caller commits."""
    name = name.strip()
    if not name:
        raise ValueError("tenant name must not be empty")
    tenant = Tenant(name=name)
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise TenantExistsError(f"tenant {name!r} already exists") from exc
    return tenant


def get_tenant_by_name(session: Session, *, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise TenantNotFoundError(f"no tenant named {name!r}")
    return tenant


def get_tenant(session: Session, *, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFoundError(f"no tenant with id {tenant_id!r}")
    return tenant


def list_tenants(session: Session) -> Sequence[Tenant]:
    return session.scalars(select(Tenant).order_by(Tenant.name)).all()


def set_tenant_limits(session: Session, *, tenant: Tenant, limits: LimitOverrides) -> None:
    """Replace the tenant's overrides (None resets one to the default); the caller commits."""
    tenant.queries_per_minute = limits.queries_per_minute
    tenant.ingest_per_minute = limits.ingest_per_minute
    tenant.max_documents = limits.max_documents
    tenant.max_stored_bytes = limits.max_stored_bytes
    tenant.query_burst = limits.query_burst
    tenant.ingest_burst = limits.ingest_burst
    session.flush()


def issue_api_key(
    session: Session,
    *,
    tenant: Tenant,
    key_name: str = "default",
    scopes: Iterable[Scope] = DEFAULT_SCOPES,
    expires_at: datetime | None = None,
    require_principals: bool | None = None,
) -> IssuedKey:
    """Create a key for the tenant; the plaintext is returned once and only its hash is kept.

    `require_principals`: True or False overrides the tenant's setting for this key; None
    follows it (and any later change of it).
    """
    scope_set = frozenset(scopes)
    if not scope_set:
        raise ValueError("a key needs at least one scope")
    if expires_at is not None and as_utc(expires_at) <= utcnow():
        raise ValueError("the expiry must be in the future")
    lookup_prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant.id,
        name=key_name,
        lookup_prefix=lookup_prefix,
        secret_hash=_hash_secret(secret),
        scopes=_scope_list(scope_set),
        expires_at=expires_at,
        require_principals=require_principals,
    )
    session.add(row)
    session.flush()
    return IssuedKey(
        api_key_id=row.id,
        tenant_name=tenant.name,
        plaintext=f"{KEY_SCHEME}_{lookup_prefix}_{secret}",
        scopes=scope_set,
        expires_at=expires_at,
    )


def key_scopes(row: ApiKey) -> frozenset[Scope]:
    # A name this release does not know (written by a newer one) grants nothing.
    known = {s.value for s in Scope}
    return frozenset(Scope(name) for name in row.scopes.split() if name in known)


def list_api_keys(session: Session, *, tenant_id: str) -> Sequence[ApiKey]:
    """The tenant's keys, revoked and expired ones included, newest first."""
    return session.scalars(
        select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at.desc())
    ).all()


def revoke_api_key(session: Session, *, tenant_id: str, api_key_id: str) -> ApiKey:
    """Revoke one of the tenant's keys (idempotent); another tenant's key is not found."""
    row = session.scalar(
        select(ApiKey).where(ApiKey.id == api_key_id, ApiKey.tenant_id == tenant_id)
    )
    if row is None:
        raise ApiKeyNotFoundError("no such key")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def resolve_api_key(session: Session, *, presented_key: str) -> TenantContext | None:
    """The caller a presented key names, or None: unknown, malformed, revoked or expired."""
    scheme, _, rest = presented_key.partition("_")
    lookup_prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not lookup_prefix or not secret:
        return None
    row = session.scalar(
        select(ApiKey).where(ApiKey.lookup_prefix == lookup_prefix, ApiKey.revoked_at.is_(None))
    )
    if row is None:
        return None
    if not hmac.compare_digest(row.secret_hash, _hash_secret(secret)):
        return None
    if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
        return None
    return TenantContext(
        tenant_id=row.tenant_id,
        tenant_name=row.tenant.name,
        api_key_id=row.id,
        scopes=key_scopes(row),
        limits=LimitOverrides.of(row.tenant),
        key_expires_at=as_utc(row.expires_at) if row.expires_at is not None else None,
        require_principals=key_requires_principals(row),
    )


def key_requires_principals(row: ApiKey) -> bool:
    """The key's own setting, or its tenant's default."""
    if row.require_principals is not None:
        return row.require_principals
    return bool(row.tenant.require_principals)


def set_tenant_require_principals(session: Session, *, tenant: Tenant, required: bool) -> None:
    """The tenant's default for its keys that have no setting of their own; the caller commits."""
    tenant.require_principals = required
    session.flush()
