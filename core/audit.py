"""The audit log: who did what to a tenant, when, and how it ended.

Details hold counts and ids only: never document text, questions or key material.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditEvent, utcnow
from core.tenancy import TenantContext


class AuditAction(StrEnum):
    INGEST = "ingest"
    DOCUMENT_DELETE = "document.delete"
    QUERY = "query"
    SEARCH = "search"
    CHAT = "chat"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    TENANT_CREATE = "tenant.create"
    TENANT_LIMITS = "tenant.limits"
    TENANT_SETTINGS = "tenant.settings"
    SCOPE_DENIED = "scope.denied"


class Outcome(StrEnum):
    OK = "ok"
    DENIED = "denied"  # wrong scope, over a quota
    FAILED = "failed"  # the service could not do it (reader, vector store)


DetailValue = str | int | float | bool | None


@dataclass(frozen=True)
class PendingEvent:
    """An event not yet added to a session (the off-request writer holds these)."""

    tenant_id: str
    action: str
    outcome: str
    api_key_id: str | None
    principal: str | None
    target: str | None
    details: str
    # When it happened, not when it was written.
    at: datetime = field(default_factory=utcnow)

    def row(self) -> AuditEvent:
        return AuditEvent(
            tenant_id=self.tenant_id, action=self.action, outcome=self.outcome,
            api_key_id=self.api_key_id, principal=self.principal, target=self.target,
            details=self.details, at=self.at,
        )  # fmt: skip


def event(
    *,
    tenant_id: str,
    action: AuditAction,
    outcome: Outcome = Outcome.OK,
    api_key_id: str | None = None,
    principal: str | None = None,
    target: str | None = None,
    details: Mapping[str, DetailValue] | None = None,
) -> PendingEvent:
    return PendingEvent(
        tenant_id=tenant_id,
        action=action.value,
        outcome=outcome.value,
        api_key_id=api_key_id,
        principal=principal,
        target=target[:200] if target else None,
        details=json.dumps(dict(details or {}), sort_keys=True),
    )


def event_by(
    caller: TenantContext,
    action: AuditAction,
    outcome: Outcome = Outcome.OK,
    *,
    target: str | None = None,
    details: Mapping[str, DetailValue] | None = None,
    principal: str | None = None,
) -> PendingEvent:
    """An event done by the calling key, on its own tenant."""
    return event(
        tenant_id=caller.tenant_id, action=action, outcome=outcome,
        api_key_id=caller.api_key_id, principal=principal, target=target, details=details,
    )  # fmt: skip


def record(
    session: Session,
    *,
    tenant_id: str,
    action: AuditAction,
    outcome: Outcome = Outcome.OK,
    api_key_id: str | None = None,
    principal: str | None = None,
    target: str | None = None,
    details: Mapping[str, DetailValue] | None = None,
) -> AuditEvent:
    """Add one event; the caller commits (with the change it describes, where there is one)."""
    row = event(
        tenant_id=tenant_id, action=action, outcome=outcome, api_key_id=api_key_id,
        principal=principal, target=target, details=details,
    ).row()  # fmt: skip
    session.add(row)
    return row


def record_by(
    session: Session,
    caller: TenantContext,
    action: AuditAction,
    outcome: Outcome = Outcome.OK,
    *,
    target: str | None = None,
    details: Mapping[str, DetailValue] | None = None,
    principal: str | None = None,
) -> AuditEvent:
    """An event done by the calling key, on its own tenant; the caller commits."""
    row = event_by(
        caller, action, outcome, target=target, details=details, principal=principal
    ).row()
    session.add(row)
    return row


def list_events(
    session: Session,
    *,
    tenant_id: str,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[AuditEvent]:
    """The tenant's events, newest first, optionally of one action and within [since, until)."""
    query = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id).limit(limit).offset(offset)
    return session.scalars(query).all()
