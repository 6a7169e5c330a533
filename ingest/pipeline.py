"""One staged file in, indexed chunks out: parse → chunk → embed → upsert → record. Idempotent."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.embedding import Embedder
from core.models import Document, FileState, JobFile, utcnow
from core.settings import ChunkingSettings
from core.vectorstore import ChunkPoint, VectorStore
from ingest.chunk import Chunk, chunk_document
from ingest.identity import document_id_for, point_id_for
from ingest.jobs import claim_file, mark_finished
from ingest.parse import ParseError, parse_document

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestDependencies:
    session_factory: sessionmaker[Session]
    store: VectorStore
    embedder: Embedder
    chunking: ChunkingSettings
    # A file `running` for longer than this is taken to have lost its worker, and may be claimed.
    stale_after: timedelta = timedelta(minutes=15)


def process_job_file(file_id: str, deps: IngestDependencies) -> FileState:
    """Index one file of a job; a finished file is left as it is (safe to run twice)."""
    with deps.session_factory() as session:
        if not claim_file(session, file_id=file_id, stale_after=deps.stale_after):
            # Finished, missing, or being processed by a live worker: a redelivery, nothing to do.
            job_file = session.get(JobFile, file_id)
            return FileState(job_file.state) if job_file else FileState.FAILED
        session.commit()
        job_file = session.get(JobFile, file_id)
        if job_file is None:  # deleted with its job between the claim and now
            return FileState.FAILED
        tenant_id, path, staged_path = job_file.tenant_id, job_file.path, job_file.staged_path
        version = job_file.sha256 or ""

    if staged_path is None or not Path(staged_path).is_file():
        return _finish(deps, file_id, FileState.FAILED, error="the uploaded file is missing")
    data = Path(staged_path).read_bytes()
    document_id = document_id_for(tenant_id, path)

    with deps.session_factory() as session:
        existing = session.scalar(
            select(Document).where(Document.tenant_id == tenant_id, Document.path == path)
        )
        if existing is not None and existing.version_sha256 == version:
            return _finish(
                deps,
                file_id,
                FileState.SKIPPED,
                error="unchanged: same content already indexed",
                document_id=document_id,
                chunk_count=existing.chunk_count,
            )

    try:
        parsed = parse_document(path, data)
    except ParseError as exc:
        return _finish(deps, file_id, FileState.FAILED, error=str(exc))
    chunks = chunk_document(
        parsed,
        max_tokens=deps.chunking.max_tokens,
        overlap_tokens=deps.chunking.overlap_tokens,
        count_tokens=deps.embedder.count_tokens,
    )
    vectors = deps.embedder.embed_passages([_embedding_text(c) for c in chunks])
    points = [
        ChunkPoint(
            point_id=point_id_for(tenant_id, document_id, version, chunk.index),
            tenant_id=tenant_id,
            document_id=document_id,
            version=version,
            dense_vector=vector,
            payload={
                "path": path,
                "title": parsed.title,
                "content_type": parsed.content_type,
                "chunk_index": chunk.index,
                "page": chunk.page,
                "section": chunk.section,
                "char_start": chunk.char_start,
                "char_end": chunk.char_end,
                "text": chunk.text,
            },
        )
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]
    # New version first, then the old one removed: a query never sees the document missing.
    deps.store.upsert(points)
    deps.store.delete_document(tenant_id=tenant_id, document_id=document_id, keep_version=version)

    with deps.session_factory() as session:
        document = session.get(Document, document_id)
        if document is None:
            document = Document(id=document_id, tenant_id=tenant_id, path=path)
            session.add(document)
        document.version_sha256 = version
        document.content_type = parsed.content_type
        document.size_bytes = len(data)
        document.chunk_count = len(chunks)
        document.title = (parsed.title or "")[:500] or None
        document.updated_at = utcnow()
        session.commit()
    return _finish(deps, file_id, FileState.DONE, document_id=document_id, chunk_count=len(chunks))


def _embedding_text(chunk: Chunk) -> str:
    # The section heading gives a passage its topic; it is embedded but not part of the span.
    if chunk.section and not chunk.text.startswith(chunk.section):
        return f"{chunk.section}\n{chunk.text}"
    return chunk.text


def _finish(
    deps: IngestDependencies,
    file_id: str,
    state: FileState,
    *,
    error: str | None = None,
    document_id: str | None = None,
    chunk_count: int = 0,
) -> FileState:
    with deps.session_factory() as session:
        job_file = session.get(JobFile, file_id)
        if job_file is None:
            return state
        mark_finished(
            job_file, state, error=error, document_id=document_id, chunk_count=chunk_count
        )
        staged = job_file.staged_path
        job_file.staged_path = None
        session.commit()
    if staged:
        Path(staged).unlink(missing_ok=True)
    return state


def fail_job_file(file_id: str, deps: IngestDependencies, *, reason: str) -> None:
    """Record a file as failed after an unexpected error (the job goes on with the others)."""
    _finish(deps, file_id, FileState.FAILED, error=reason)
