"""Drift between the SQL document rows and the vector store, found and fixed where it can be.

With the store's current port (count and delete by tenant/document), reconciliation walks the
rows: points of a stale version are deleted, and a document whose points are missing or whose
count differs from its row is reported (its bytes are not kept, so it must be uploaded again).
Points of documents that have no row at all (a worker died between writing points and
recording the document, or a row was deleted by hand) are found by listing each tenant's
document ids in the store, and deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Document, Tenant
from core.vectorstore import VectorStore


@dataclass
class ReconcileReport:
    documents_checked: int = 0
    stale_points_deleted: int = 0
    orphan_points_deleted: int = 0
    # (tenant id, path, chunks in the row, chunks in the store)
    missing_or_partial: list[tuple[str, str, int, int]] = field(default_factory=list)


def reconcile(session: Session, store: VectorStore, *, fix: bool = True) -> ReconcileReport:
    """Check every document row against the store; with `fix`, delete stale versions' points."""
    report = ReconcileReport()
    for document in session.scalars(select(Document).order_by(Document.tenant_id, Document.path)):
        report.documents_checked += 1
        stored = store.count(tenant_id=document.tenant_id, document_id=document.id)
        if stored > document.chunk_count and fix:
            # More points than the row knows of: an older version's points survived.
            store.delete_document(
                tenant_id=document.tenant_id,
                document_id=document.id,
                keep_version=document.version_sha256,
            )
            after = store.count(tenant_id=document.tenant_id, document_id=document.id)
            report.stale_points_deleted += stored - after
            stored = after
        if stored != document.chunk_count:
            report.missing_or_partial.append(
                (document.tenant_id, document.path, document.chunk_count, stored)
            )
    for tenant_id in session.scalars(select(Tenant.id)):
        known = set(session.scalars(select(Document.id).where(Document.tenant_id == tenant_id)))
        for document_id, points in store.document_counts(tenant_id=tenant_id).items():
            if document_id in known:
                continue
            report.orphan_points_deleted += points
            if fix:
                store.delete_document(tenant_id=tenant_id, document_id=document_id)
    return report
