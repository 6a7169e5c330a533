"""Drift between the SQL document rows and the vector store, found and fixed where it can be.

For each document row, the store must hold exactly the row's version, with the row's chunk
count. Points of any other version (stale) are deleted; a row whose version is missing or
partial in the store is reported (its bytes are not kept, so it must be uploaded again; until
then an upload of the same bytes is indexed, not skipped as unchanged). Points of documents
that have no row at all (a worker died between writing points and recording the document, or
a row was deleted by hand) are found by listing each tenant's document ids in the store, and
deleted.

Kept original files (ingest.originals) are held to the same rule: only the row's version's file
stays; a document with no row keeps none.

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
from ingest.originals import Originals
from ingest.versions import lock_documents


@dataclass
class ReconcileReport:
    """What was found; with `fix`, the stale and orphan points were also deleted."""

    documents_checked: int = 0
    stale_points_deleted: int = 0
    orphan_points_deleted: int = 0
    # Kept original files of another version than the row's, or of documents with no row.
    stale_originals_deleted: int = 0
    # (tenant id, path, chunks in the row, chunks of the row's version in the store)
    missing_or_partial: list[tuple[str, str, int, int]] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        """Anything at all out of step between the rows and the store."""
        return bool(
            self.stale_points_deleted
            or self.orphan_points_deleted
            or self.stale_originals_deleted
            or self.missing_or_partial
        )


def reconcile(
    session: Session, store: VectorStore, *, fix: bool = True, originals: Originals | None = None
) -> ReconcileReport:
    """Check every document row against the store; with `fix`, delete stale versions' points
    and points of documents without a row, and (given `originals`) kept original files of
    other versions or of documents without a row. Commits `session` once per document it
    locks."""
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
            if originals is not None:
                _drop_stale_originals(
                    originals, document.tenant_id, document_id, document.version_sha256,
                    report, fix=fix,
                )  # fmt: skip
        session.commit()
    tenants = list(session.scalars(select(Tenant.id)))
    session.commit()
    for tenant_id in tenants:
        if originals is not None:
            _drop_orphan_originals(session, originals, tenant_id, report, fix=fix)
        for document_id, points in store.document_counts(tenant_id=tenant_id).items():
            lock_documents(session, [document_id])
            if session.get(Document, document_id, populate_existing=True) is None:
                report.orphan_points_deleted += points
                if fix:
                    store.delete_document(tenant_id=tenant_id, document_id=document_id)
            session.commit()
    return report


def _drop_orphan_originals(
    session: Session, originals: Originals, tenant_id: str, report: ReconcileReport, *, fix: bool
) -> None:
    """Kept files of the tenant's documents that have no row (a writer died before its commit,
    or a row was deleted by hand), each checked under the document's lock."""
    for document_id in originals.document_ids(tenant_id=tenant_id):
        lock_documents(session, [document_id])
        if session.get(Document, document_id, populate_existing=True) is None:
            _drop_stale_originals(originals, tenant_id, document_id, None, report, fix=fix)
        session.commit()


def _drop_stale_originals(
    originals: Originals,
    tenant_id: str,
    document_id: str,
    version: str | None,
    report: ReconcileReport,
    *,
    fix: bool,
) -> None:
    stale = originals.stale_files(tenant_id=tenant_id, document_id=document_id, version=version)
    report.stale_originals_deleted += len(stale)
    if fix:
        for path in stale:
            path.unlink(missing_ok=True)
        if version is None:
            originals.drop_document(tenant_id=tenant_id, document_id=document_id)


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
