"""Tenants and API keys: keys are shown once, stored hashed, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import ApiKey, Tenant

KEY_SCHEME = "rkb"


class TenantExistsError(ValueError):
    pass


class TenantNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class TenantContext:
    """Who is calling: decided by the API key alone, never by the request's URL or body."""

    tenant_id: str
    tenant_name: str
    api_key_id: str


@dataclass(frozen=True)
class IssuedKey:
    api_key_id: str
    tenant_name: str
    plaintext: str  # shown once, never stored


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


def issue_api_key(session: Session, *, tenant: Tenant, key_name: str = "default") -> IssuedKey:
    """Create a key for the tenant; the plaintext is returned once and only its hash is kept."""
    lookup_prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant.id,
        name=key_name,
        lookup_prefix=lookup_prefix,
        secret_hash=_hash_secret(secret),
    )
    session.add(row)
    session.flush()
    return IssuedKey(
        api_key_id=row.id,
        tenant_name=tenant.name,
        plaintext=f"{KEY_SCHEME}_{lookup_prefix}_{secret}",
    )


def resolve_api_key(session: Session, *, presented_key: str) -> TenantContext | None:
    """The tenant a presented key belongs to, or None for an unknown, malformed or revoked key."""
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
    return TenantContext(tenant_id=row.tenant_id, tenant_name=row.tenant.name, api_key_id=row.id)
