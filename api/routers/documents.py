"""The tenant's indexed documents."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from api.deps import IngestCaller, ReadCaller, RuntimeDep, SessionDep
from api.end_users import end_user_principals
from api.schemas import (
    AUTH_ERRORS,
    PRINCIPAL_RULE,
    ChunkList,
    ChunkOut,
    DocumentList,
    DocumentOut,
    DocumentTextOut,
    IdPath,
    QueryPrincipal,
    error_responses,
    invalid_request,
    query_principals,
)
from core import document_reads
from core.audit import AuditAction, Outcome, record_by
from core.models import Document
from core.redaction import redact_turns_drawing_on
from core.tenancy import TenantContext
from ingest.jobs import purge_failed_of_path
from ingest.originals import originals_for
from ingest.versions import lock_documents, next_sequences, record_delete

router = APIRouter(prefix="/v1/documents", tags=["documents"])

PrincipalsQuery = Annotated[
    list[QueryPrincipal] | None,
    Query(
        max_length=256,
        description="The end user's principals (repeat the parameter; once with an empty value, "
        "`principals=`, for an end user in no group): only documents one of them may read are "
        "shown; another document is a 404. Omitted: no per-document check, or a 400 when the "
        "key requires principals." + PRINCIPAL_RULE,
    ),
]
MAX_TEXT_CHARS = 100_000


def document_out(d: Document) -> DocumentOut:
    return DocumentOut(
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


@router.get("", response_model=DocumentList, responses=error_responses(*AUTH_ERRORS, 400, 422))
def list_documents(
    tenant: ReadCaller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Documents per page.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="`next_cursor` of the previous page.")
    ] = None,
    path_prefix: Annotated[
        str | None, Query(max_length=1024, description="Only documents under this folder.")
    ] = None,
    path_contains: Annotated[
        str | None, Query(max_length=256, description="Only paths containing this text.")
    ] = None,
    file_type: Annotated[
        str | None, Query(pattern=r"^[A-Za-z0-9]{1,16}$", description="Extension, e.g. `pdf`.")
    ] = None,
    updated_since: Annotated[
        datetime | None, Query(description="Only documents updated at or after this time.")
    ] = None,
    principals: PrincipalsQuery = None,
) -> DocumentList:
    """A page of the caller's tenant's documents by path (scope `read`). Pages follow
    `next_cursor` (stable while documents change); until this release the list was one page of
    every document, so a client that ignores `next_cursor` now sees the first `limit` (100)."""
    try:
        page = document_reads.list_documents(
            session,
            tenant_id=tenant.tenant_id,
            limit=limit,
            cursor=cursor,
            path_prefix=path_prefix,
            path_contains=path_contains,
            file_type=file_type,
            updated_since=updated_since,
            principals=end_user_principals(tenant, query_principals(principals)),
        )
    except document_reads.InvalidCursorError as exc:
        raise invalid_request(("query", "cursor"), str(exc)) from exc
    return DocumentList(
        documents=[document_out(d) for d in page.documents], next_cursor=page.next_cursor
    )


def _readable(
    session: SessionDep, tenant: TenantContext, document_id: str, principals: list[str] | None
) -> Document:
    """The document if the end user may read it (404 otherwise), or 400 when the key requires
    principals and none came: a document read is as much a read as a search."""
    principals = end_user_principals(tenant, query_principals(principals))
    try:
        return document_reads.get_document(
            session, tenant_id=tenant.tenant_id, document_id=document_id, principals=principals
        )
    except document_reads.DocumentNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.get(
    "/{document_id}",
    response_model=DocumentOut,
    responses=error_responses(*AUTH_ERRORS, 400, 404, 422),
    summary="One document",
)
def read_document(
    document_id: IdPath, tenant: ReadCaller, session: SessionDep, principals: PrincipalsQuery = None
) -> DocumentOut:
    """The document's row: path, version, size, chunks, access list, metadata (scope `read`)."""
    return document_out(_readable(session, tenant, document_id, principals))


@router.get(
    "/{document_id}/chunks",
    response_model=ChunkList,
    responses=error_responses(*AUTH_ERRORS, 400, 404, 422),
    summary="A document's chunks, in order",
)
def read_chunks(
    document_id: IdPath,
    tenant: ReadCaller,
    session: SessionDep,
    runtime: RuntimeDep,
    offset: Annotated[int, Query(ge=0, description="Chunks to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Chunks per page.")] = 100,
    principals: PrincipalsQuery = None,
) -> ChunkList:
    """The current version's chunks as indexed: index, page, section, char span in the
    document's extracted text, and text (scope `read`)."""
    document = _readable(session, tenant, document_id, principals)
    chunks = document_reads.document_chunks(runtime.store, document)
    page = chunks[offset : offset + limit]
    return ChunkList(
        document_id=document.id,
        chunks=[ChunkOut(**vars(c)) for c in page],
        next_offset=offset + limit if offset + limit < len(chunks) else None,
    )


@router.get(
    "/{document_id}/text",
    response_model=DocumentTextOut,
    responses=error_responses(*AUTH_ERRORS, 400, 404, 422),
    summary="A document's extracted text, or a range or page of it",
)
def read_text(
    document_id: IdPath,
    tenant: ReadCaller,
    session: SessionDep,
    runtime: RuntimeDep,
    char_start: Annotated[
        int, Query(ge=0, description="First character (offsets as in citations).")
    ] = 0,
    char_end: Annotated[
        int | None, Query(ge=0, description="End (exclusive); none: the end.")
    ] = None,
    page: Annotated[int | None, Query(ge=1, description="Only this page's text.")] = None,
    max_chars: Annotated[
        int, Query(ge=1, le=MAX_TEXT_CHARS, description="At most this many characters.")
    ] = 20_000,
    principals: PrincipalsQuery = None,
) -> DocumentTextOut:
    """The text the document was indexed from (rebuilt from its chunks, so citation offsets
    apply), cut to `[char_start, char_end)` and to `page` when given, at most `max_chars` at a
    time; `next_char_start` continues (scope `read`). A page with no text is a 404; a
    `char_end` before `char_start` is a 422. A range past the end is empty (`total_chars`
    says where the text ends)."""
    if char_end is not None and char_end < char_start:
        raise invalid_request(("query", "char_end"), "char_end is before char_start")
    document = _readable(session, tenant, document_id, principals)
    chunks = document_reads.document_chunks(runtime.store, document)
    full_text = document_reads.document_text(chunks)
    start, end = char_start, len(full_text) if char_end is None else min(char_end, len(full_text))
    if page is not None:
        span = document_reads.page_span(chunks, page)
        if span is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no text on page {page}")
        start, end = max(start, span[0]), min(end, span[1])
    start = min(start, len(full_text))
    end = max(start, end)
    stop = min(end, start + max_chars)
    return DocumentTextOut(
        document_id=document.id,
        path=document.path,
        char_start=start,
        char_end=stop,
        total_chars=len(full_text),
        page=page,
        text=full_text[start:stop],
        next_char_start=stop if stop < end else None,
    )


@router.get(
    "/{document_id}/file",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The original bytes, as an attachment named after the path's last "
            "part (`filename*`, RFC 6266, for names beyond ASCII)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        **error_responses(*AUTH_ERRORS, 400, 404, 422),
    },
    summary="The document's original file, where it is kept",
)
def read_file(
    document_id: IdPath,
    tenant: ReadCaller,
    session: SessionDep,
    runtime: RuntimeDep,
    principals: PrincipalsQuery = None,
) -> StreamingResponse:
    """The bytes of the document's current version as uploaded (scope `read`), with its content
    type. Kept per `ingest.keep_originals` (and its size and age limits): a document whose
    original is not kept, or no longer, is a 404 that says so (its chunks and text remain)."""
    document = _readable(session, tenant, document_id, principals)
    found = originals_for(runtime.settings).find(
        tenant_id=document.tenant_id, document_id=document.id, version=document.version_sha256
    )
    try:
        # Opened now: a delete or a newer version meanwhile cannot cut the download short.
        handle = found.open("rb") if found is not None else None
    except OSError:
        handle = None
    if handle is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "the original file of this document is not kept (RAGKB_INGEST__KEEP_ORIGINALS, its "
            "size or age limit); its extracted text is at /text",
        )
    size = str(os.fstat(handle.fileno()).st_size)
    return StreamingResponse(
        _read_blocks(handle),
        media_type=document.content_type or "application/octet-stream",
        headers={"Content-Disposition": attachment(document.path), "Content-Length": size},
    )


def attachment(path: str) -> str:
    """A Content-Disposition that saves the file under the path's last part: `filename` an
    ASCII stand-in (quotes, backslashes and controls replaced), `filename*` the exact name
    (RFC 6266, RFC 8187 UTF-8 percent-encoding)."""
    name = PurePosixPath(path).name or "document"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _read_blocks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while block := handle.read(1024 * 1024):
            yield block


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
    summary="Delete a document and every chunk of it",
)
def delete_document(
    document_id: IdPath, tenant: IngestCaller, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Remove all of the document's points (every version), check none is left, then its kept
    original file and its row (scope `ingest`), redact the conversation answers that drew on it
    (their text is replaced by a fixed notice; the audit event counts them), and delete the
    bytes kept for a retry of its path's failed uploads. The delete
    wins over uploads of the path accepted before it that are still queued (they end `skipped`
    as superseded); an upload accepted after it creates the document again."""
    # Numbered and applied under the document's write lock, like an upload's version
    # (ingest.versions): no worker can store a version of it meanwhile.
    (sequence,) = next_sequences(session, 1)
    lock_documents(session, [document_id])
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
    # Still under the document's lock: no version of it can be stored meanwhile.
    originals_for(runtime.settings).drop_document(
        tenant_id=tenant.tenant_id, document_id=document_id
    )
    path = document.path
    session.delete(document)
    record_delete(session, tenant_id=tenant.tenant_id, document_id=document_id, sequence=sequence)
    session.flush()
    redacted = redact_turns_drawing_on(session, tenant_id=tenant.tenant_id, document_id=document_id)
    purged = purge_failed_of_path(session, tenant_id=tenant.tenant_id, path=path, below=sequence)
    record_by(
        session, tenant, AuditAction.DOCUMENT_DELETE, target=document_id,
        details={"turns_redacted": redacted, "failed_files_purged": purged},
    )  # fmt: skip
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
