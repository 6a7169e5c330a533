"""Reading a tenant's documents back: pages of the document list, a document's chunks in order,
and its extracted text (or a range of it), rebuilt from the chunks the store holds.

Plain functions over a session and a vector store; every read takes the tenant id, and an end
user's principals (when the caller passes them) hide documents they may not read.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Document
from core.principals import may_read
from core.vectorstore import PUBLIC_PRINCIPAL, VectorStore


class DocumentNotFoundError(LookupError):
    """No such document in the tenant, or the end user may not read it (the same answer)."""


class InvalidCursorError(ValueError):
    """A page cursor that this service did not hand out."""


@dataclass(frozen=True)
class DocumentPage:
    documents: list[Document]
    next_cursor: str | None


@dataclass(frozen=True)
class StoredChunk:
    """One chunk of a document's current version, as stored."""

    chunk_index: int
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    text: str


def encode_cursor(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursorError("not a cursor from this API; start again without one") from exc


def readable_by(document: Document, principals: Sequence[str] | None) -> bool:
    """None: no end-user context, every document of the tenant. Otherwise the document has no
    access list, or lists one of the principals."""
    # A list holding the payload's public mark predates the principal rule: public, as in search.
    legacy_public = PUBLIC_PRINCIPAL in (document.principals or ())
    return may_read(principals, document.principals) or legacy_public


def list_documents(
    session: Session,
    *,
    tenant_id: str,
    limit: int,
    cursor: str | None = None,
    path_prefix: str | None = None,
    path_contains: str | None = None,
    file_type: str | None = None,
    updated_since: datetime | None = None,
    principals: Sequence[str] | None = None,
) -> DocumentPage:
    """A page of the tenant's documents by path (keyset on the unique path, so a page is stable
    while documents come and go). `path_prefix` is a folder (`reports/2024` matches
    `reports/2024/q3.pdf`, not `reports/2024-old/x`); `file_type` an extension without the dot.
    Raises InvalidCursorError for a cursor this API did not hand out."""
    query = select(Document).where(Document.tenant_id == tenant_id)
    if cursor is not None:
        query = query.where(Document.path > decode_cursor(cursor))
    if path_prefix:
        folder = path_prefix.strip("/")
        query = query.where(Document.path.startswith(folder + "/", autoescape=True))
    if path_contains:
        query = query.where(Document.path.contains(path_contains, autoescape=True))
    if file_type:
        query = query.where(Document.path.endswith("." + file_type.lower(), autoescape=True))
    if updated_since is not None:
        query = query.where(Document.updated_at >= updated_since)
    rows: list[Document] = []
    # Principals are checked per row (a JSON list); read past hidden rows until the page is full.
    for document in session.scalars(query.order_by(Document.path).execution_options(yield_per=500)):
        if readable_by(document, principals):
            rows.append(document)
            if len(rows) > limit:
                break
    more = len(rows) > limit
    page = rows[:limit]
    return DocumentPage(page, encode_cursor(page[-1].path) if more and page else None)


def get_document(
    session: Session, *, tenant_id: str, document_id: str, principals: Sequence[str] | None = None
) -> Document:
    """The tenant's document; DocumentNotFoundError when absent or not readable by `principals`."""
    document = session.scalar(
        select(Document).where(Document.id == document_id, Document.tenant_id == tenant_id)
    )
    if document is None or not readable_by(document, principals):
        raise DocumentNotFoundError("no such document")
    return document


def document_chunks(store: VectorStore, document: Document) -> list[StoredChunk]:
    """The current version's chunks in order (older versions' points, if a replacement is still
    cleaning up, are left out)."""
    chunks: list[StoredChunk] = []
    offset: str | None = None
    while True:
        points, offset = store.scroll(
            tenant_id=document.tenant_id, document_id=document.id, offset=offset
        )
        chunks.extend(
            _chunk(p.payload) for p in points if p.payload.get("version") == document.version_sha256
        )
        if offset is None:
            break
    return sorted(chunks, key=lambda c: c.chunk_index)


def _chunk(payload: dict[str, Any]) -> StoredChunk:
    page = payload.get("page")
    return StoredChunk(
        chunk_index=int(payload.get("chunk_index", 0)),
        page=int(page) if page is not None else None,
        section=payload.get("section"),
        char_start=int(payload["char_start"]),
        char_end=int(payload["char_end"]),
        text=str(payload["text"]),
    )


def document_text(chunks: Sequence[StoredChunk]) -> str:
    """The document's extracted text rebuilt from its chunks: each chunk is an exact span of it,
    so offsets stay those of citations; the separators between elements that no chunk covers
    (blank lines) come back as newlines of the same length."""
    if not chunks:
        return ""
    length = max(c.char_end for c in chunks)
    buffer = ["\n"] * length
    for c in chunks:
        span = c.char_end - c.char_start
        buffer[c.char_start : c.char_end] = list(c.text[:span].ljust(span))
    return "".join(buffer)


def page_span(chunks: Sequence[StoredChunk], page: int) -> tuple[int, int] | None:
    """The char range that a page's chunks cover, or None when no chunk is on that page."""
    on_page = [c for c in chunks if c.page == page]
    if not on_page:
        return None
    return min(c.char_start for c in on_page), max(c.char_end for c in on_page)
