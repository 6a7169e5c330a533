"""A tenant's effective limits (its overrides over the defaults) and its storage usage."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Document, FileState, JobFile
from core.settings import LimitSettings
from core.tenancy import LimitOverrides


@dataclass(frozen=True)
class TenantLimits:
    queries_per_minute: float
    query_burst: int
    ingest_per_minute: float
    ingest_burst: int
    max_documents: int
    max_stored_bytes: int


def effective_limits(overrides: LimitOverrides, defaults: LimitSettings) -> TenantLimits:
    o = overrides
    queries_per_minute = o.queries_per_minute or defaults.queries_per_minute
    ingest_per_minute = o.ingest_per_minute or defaults.ingest_per_minute
    return TenantLimits(
        queries_per_minute=queries_per_minute,
        query_burst=o.query_burst or default_burst(queries_per_minute, defaults.query_burst),
        ingest_per_minute=ingest_per_minute,
        ingest_burst=o.ingest_burst or default_burst(ingest_per_minute, defaults.ingest_burst),
        max_documents=defaults.max_documents if o.max_documents is None else o.max_documents,
        max_stored_bytes=(
            defaults.max_stored_bytes if o.max_stored_bytes is None else o.max_stored_bytes
        ),
    )


def default_burst(per_minute: float, configured_burst: int) -> int:
    """A tenant's burst when it has none of its own: the configured burst, but never more than
    a minute of the tenant's rate (a tenant at 6/min gets 6 at once, not the global 30)."""
    return max(1, min(configured_burst, math.floor(per_minute)))


@dataclass(frozen=True)
class Usage:
    documents: int
    stored_bytes: int


class QuotaExceededError(Exception):
    """An upload would take the tenant over a quota; nothing of it may be kept."""


def existing_paths(session: Session, *, tenant_id: str, paths: list[str]) -> set[str]:
    """Which of these paths are already documents (a new version replaces, not adds, one)."""
    found: set[str] = set()
    for start in range(0, len(paths), 500):
        batch = paths[start : start + 500]
        found.update(
            session.scalars(
                select(Document.path).where(
                    Document.tenant_id == tenant_id, Document.path.in_(batch)
                )
            )
        )
    return found


def tenant_usage(session: Session, *, tenant_id: str) -> Usage:
    """Stored documents and bytes, plus files accepted but not yet indexed (so a burst of uploads
    cannot slip past the quota before its workers have written the documents)."""
    documents, stored = session.execute(
        select(func.count(Document.id), func.coalesce(func.sum(Document.size_bytes), 0)).where(
            Document.tenant_id == tenant_id
        )
    ).one()
    pending, pending_bytes = session.execute(
        select(func.count(JobFile.id), func.coalesce(func.sum(JobFile.size_bytes), 0)).where(
            JobFile.tenant_id == tenant_id,
            JobFile.state.in_([FileState.QUEUED, FileState.RUNNING]),
        )
    ).one()
    return Usage(documents=int(documents) + int(pending), stored_bytes=int(stored + pending_bytes))


def check_quota(usage: Usage, limits: TenantLimits, *, new_documents: int, new_bytes: int) -> None:
    """Raise QuotaExceededError with the reason when the addition would not fit."""
    if usage.documents + new_documents > limits.max_documents:
        raise QuotaExceededError(
            f"document quota exceeded: {usage.documents} stored or queued + {new_documents} new "
            f"> {limits.max_documents}"
        )
    if usage.stored_bytes + new_bytes > limits.max_stored_bytes:
        raise QuotaExceededError(
            f"storage quota exceeded: {usage.stored_bytes} bytes stored or queued + {new_bytes} "
            f"new > {limits.max_stored_bytes}"
        )
