"""The tenant's indexed documents."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import SessionDep, TenantDep
from api.schemas import DocumentList, DocumentOut, ErrorOut
from core.models import Document

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.get("", response_model=DocumentList, responses={401: {"model": ErrorOut}})
def list_documents(tenant: TenantDep, session: SessionDep) -> DocumentList:
    """Every document of the caller's tenant, by path."""
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
            )
            for d in rows
        ]
    )
