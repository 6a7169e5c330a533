"""Drift between the SQL document rows and the vector store, found and fixed where it can be.

For each document row, the store must hold exactly the row's version, with the row's chunk
count. Points of any other version (stale) are deleted; a row whose version is missing or
partial in the store is reported (its bytes are not kept, so it must be uploaded again; until
then an upload of the same bytes is indexed, not skipped as unchanged). Points of documents
that have no row at all (a worker died between writing points and recording the document, or
a row was deleted by hand) are found by listing each tenant's document ids in the store, and
deleted.

Each document is checked and fixed under its write lock (ingest.versions), so reconciling
beside live ingest never deletes a version being stored: a first version's points exist before
its row, a new version's before the row moves to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Document, Tenant
from core.vectorstore import VectorStore
from ingest.versions import lock_documents


@dataclass
class ReconcileReport:
    """What was found; with `fix`, the stale and orphan points were also deleted."""

    documents_checked: int = 0
    stale_points_deleted: int = 0
    orphan_points_deleted: int = 0
    # (tenant id, path, chunks in the row, chunks of the row's version in the store)
    missing_or_partial: list[tuple[str, str, int, int]] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        """Anything at all out of step between the rows and the store."""
        return bool(
            self.stale_points_deleted or self.orphan_points_deleted or self.missing_or_partial
        )


def reconcile(session: Session, store: VectorStore, *, fix: bool = True) -> ReconcileReport:
    """Check every document row against the store; with `fix`, delete stale versions' points
    and points of documents without a row. Commits `session` once per document it locks."""
    report = ReconcileReport()
    session.commit()  # each document's lock is taken at the start of its own transaction
    listed = session.scalars(select(Document.id).order_by(Document.tenant_id, Document.path)).all()
    session.commit()
    for document_id in listed:
        lock_documents(session, [document_id])
        document = session.get(Document, document_id, populate_existing=True)
        if document is not None:
            report.documents_checked += 1
            _check_document(store, document, report, fix=fix)
        session.commit()
    tenants = list(session.scalars(select(Tenant.id)))
    session.commit()
    for tenant_id in tenants:
        for document_id, points in store.document_counts(tenant_id=tenant_id).items():
            lock_documents(session, [document_id])
            if session.get(Document, document_id, populate_existing=True) is None:
                report.orphan_points_deleted += points
                if fix:
                    store.delete_document(tenant_id=tenant_id, document_id=document_id)
            session.commit()
    return report


def _check_document(
    store: VectorStore, document: Document, report: ReconcileReport, *, fix: bool
) -> None:
    tenant_id, document_id = document.tenant_id, document.id
    stored = store.count(tenant_id=tenant_id, document_id=document_id)
    current = store.count(
        tenant_id=tenant_id, document_id=document_id, version=document.version_sha256
    )
    if stored > current:
        report.stale_points_deleted += stored - current
        if fix:
            store.delete_document(
                tenant_id=tenant_id, document_id=document_id, keep_version=document.version_sha256
            )
    if current != document.chunk_count:
        report.missing_or_partial.append((tenant_id, document.path, document.chunk_count, current))
