"""The tenant's indexed documents."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy import select

from api.deps import IngestCaller, ReadCaller, RuntimeDep, SessionDep
from api.schemas import AUTH_ERRORS, DocumentList, DocumentOut, IdPath, error_responses
from core.audit import AuditAction, Outcome, record_by
from core.models import Document
from core.redaction import redact_turns_drawing_on

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.get("", response_model=DocumentList, responses=error_responses(*AUTH_ERRORS))
def list_documents(tenant: ReadCaller, session: SessionDep) -> DocumentList:
    """Every document of the caller's tenant, by path (scope `read`)."""
    rows = session.scalars(
        select(Document).where(Document.tenant_id == tenant.tenant_id).order_by(Document.path)
    )
    return DocumentList(
        documents=[
            DocumentOut(
                id=d.id,
                path=d.path,
                title=d.title,
                content_type=d.content_type,
                size_bytes=d.size_bytes,
                chunk_count=d.chunk_count,
                version_sha256=d.version_sha256,
                updated_at=d.updated_at,
                principals=d.principals,
                metadata=d.document_metadata or {},
            )
            for d in rows
        ]
    )


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*AUTH_ERRORS, 404, 503),
    summary="Delete a document and every chunk of it",
)
def delete_document(
    document_id: IdPath, tenant: IngestCaller, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Remove all of the document's points (every version), check none is left, then its row
    (scope `ingest`), and redact the conversation answers that drew on it (their text is
    replaced by a fixed notice; the audit event counts them)."""
    document = session.scalar(
        select(Document).where(Document.id == document_id, Document.tenant_id == tenant.tenant_id)
    )
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document")
    runtime.delete_document(tenant_id=tenant.tenant_id, document_id=document_id)
    left = runtime.store.count(tenant_id=tenant.tenant_id, document_id=document_id)
    if left:
        # The row stays, so a retry (or `ragkb reconcile`) can finish the job.
        record_by(
            session, tenant, AuditAction.DOCUMENT_DELETE, Outcome.FAILED,
            target=document_id, details={"chunks_left": left},
        )  # fmt: skip
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"{left} chunks could not be deleted; retry"
        )
    # The row goes first (locking it in PostgreSQL), then the answers that drew on it: an answer
    # being stored meanwhile either sees the row gone or is seen here (generation.conversations).
    session.delete(document)
    session.flush()
    redacted = redact_turns_drawing_on(session, tenant_id=tenant.tenant_id, document_id=document_id)
    record_by(
        session, tenant, AuditAction.DOCUMENT_DELETE, target=document_id,
        details={"turns_redacted": redacted},
    )  # fmt: skip
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
