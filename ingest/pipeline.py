"""A batch of staged files in, indexed chunks out: parse → chunk → embed → upsert → record.

Files are processed a batch at a time (one Celery task per batch): each file is parsed and
chunked on its own, the chunks of every file in the batch are embedded together, then the
batch's points are stored in one call (old versions removed), and only then are the files
recorded as done. Idempotent: point ids are deterministic and a finished file is never claimed
again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from opentelemetry import trace
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from core.embedding import Embedder
from core.models import Document, FileState, JobFile, utcnow
from core.settings import ChunkingSettings
from core.telemetry import TENANT_ATTRIBUTE, span
from core.vectorstore import (
    ChunkPoint,
    DocumentVersion,
    VectorStore,
    file_type,
    with_lexical_context,
)
from ingest.chunk import Chunk, chunk_document
from ingest.identity import document_id_for, point_id_for
from ingest.jobs import claim_file, mark_finished
from ingest.parse import ParsedDocument, ParseError, parse_document

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestDependencies:
    session_factory: sessionmaker[Session]
    store: VectorStore
    embedder: Embedder
    chunking: ChunkingSettings
    # A file `running` for longer than this is taken to have lost its worker, and may be claimed.
    stale_after: timedelta = timedelta(minutes=15)
    # Asked right before the upsert: is `store` still the active index? After `ragkb reindex`
    # switched models, vectors of the old model must not land anywhere; the task is retried.
    still_active: Callable[[], bool] | None = None
    # A failed file's staged bytes stay on disk (for a retry without a new upload).
    keep_failed_files: bool = False


class IndexSwitchedError(ConnectionError):
    """The active index changed while a task embedded: a transient fault (the task retries)."""


@dataclass(frozen=True)
class _Claimed:
    file_id: str
    tenant_id: str
    path: str
    version: str
    staged_path: str | None
    principals: list[str] | None = None
    document_metadata: dict[str, str] | None = None
    ocr_mode: str = "auto"


@dataclass(frozen=True)
class _Outcome:
    state: FileState
    error: str | None = None
    document_id: str | None = None
    chunk_count: int = 0


@dataclass(frozen=True)
class _Prepared:
    file: _Claimed
    document_id: str
    parsed: ParsedDocument
    chunks: list[Chunk]
    size_bytes: int


def process_job_file(file_id: str, deps: IngestDependencies) -> FileState:
    """Index one file of a job (see `process_job_files`)."""
    return process_job_files([file_id], deps)[file_id]


def process_job_files(
    file_ids: Sequence[str], deps: IngestDependencies, *, reclaim: bool = False
) -> dict[str, FileState]:
    """Index a batch of job files; finished files are left as they are (safe to run twice).

    `reclaim` lets a retry of the same task take back files it had claimed before a transient
    fault (they are `running`, but no other task carries them).
    """
    claimed, states = _claim(file_ids, deps, reclaim=reclaim)
    if claimed:
        trace.get_current_span().set_attribute(TENANT_ATTRIBUTE, claimed[0].tenant_id)
    outcomes: dict[str, _Outcome] = {}
    prepared: list[_Prepared] = []
    for job_file in claimed:
        try:
            result = _prepare(job_file, deps)
        except ParseError as exc:
            result = _Outcome(FileState.FAILED, error=str(exc))
        except Exception as exc:  # a parser bug on one file must not stop the others
            logger.exception("parsing %s failed", job_file.path)
            result = _Outcome(FileState.FAILED, error=f"internal error ({type(exc).__name__})")
        if isinstance(result, _Prepared):
            prepared.append(result)
        else:
            outcomes[job_file.file_id] = result

    # One encoder call for the whole batch; sentence-transformers sorts by length inside it.
    texts = [embedding_text(chunk) for item in prepared for chunk in item.chunks]
    # Repeated texts (boilerplate, templates, copies) are encoded once.
    unique = list(dict.fromkeys(texts))
    with span("embed", {"gen_ai.operation.name": "embeddings", "ragkb.texts": len(unique)}):
        by_text = dict(zip(unique, deps.embedder.embed_passages(unique), strict=True))
    vectors = [by_text[text] for text in texts]
    if prepared and deps.still_active is not None and not deps.still_active():
        raise IndexSwitchedError("the active vector index changed; embedding again")
    versions: list[DocumentVersion] = []
    offset = 0
    for item in prepared:
        item_vectors = vectors[offset : offset + len(item.chunks)]
        versions.append(_document_version(item, item_vectors, deps.chunking.lexical_neighbours))
        offset += len(item.chunks)
    # One store call for the batch: new versions in, other versions out, one flush to disk.
    with span("upsert", {"db.system.name": "qdrant", "ragkb.documents": len(versions)}):
        deps.store.replace_documents(versions)

    _record(deps, prepared, outcomes)
    for item in prepared:
        states[item.file.file_id] = FileState.DONE
    for file_id, outcome in outcomes.items():
        states[file_id] = outcome.state
    return states


def _claim(
    file_ids: Sequence[str], deps: IngestDependencies, *, reclaim: bool
) -> tuple[list[_Claimed], dict[str, FileState]]:
    stale_after = timedelta(0) if reclaim else deps.stale_after
    with deps.session_factory() as session:
        taken = [f for f in file_ids if claim_file(session, file_id=f, stale_after=stale_after)]
        session.commit()
        rows = session.scalars(
            select(JobFile).where(JobFile.id.in_(file_ids)).options(selectinload(JobFile.job))
        ).all()
    by_id = {row.id: row for row in rows}
    # Finished, missing, or being processed by a live worker: a redelivery, nothing to do.
    states = {
        f: FileState(by_id[f].state) if f in by_id else FileState.FAILED
        for f in file_ids
        if f not in taken
    }
    claimed = [
        _Claimed(
            file_id=row.id,
            tenant_id=row.tenant_id,
            path=row.path,
            version=row.sha256 or "",
            staged_path=row.staged_path,
            principals=row.job.principals,
            document_metadata=row.job.document_metadata,
            ocr_mode=row.job.ocr_mode,
        )
        for f in taken
        if (row := by_id.get(f)) is not None  # deleted with its job since the claim
    ]
    return claimed, states


def _prepare(job_file: _Claimed, deps: IngestDependencies) -> _Prepared | _Outcome:
    staged = job_file.staged_path
    if staged is None or not Path(staged).is_file():
        return _Outcome(FileState.FAILED, error="the uploaded file is missing")
    document_id = document_id_for(job_file.tenant_id, job_file.path)
    with deps.session_factory() as session:
        existing = session.scalar(
            select(Document).where(
                Document.tenant_id == job_file.tenant_id, Document.path == job_file.path
            )
        )
        # Same bytes, same access list and metadata: nothing to do. Same bytes with another
        # access list is re-indexed in place (same point ids, new payload).
        if (
            existing is not None
            and existing.version_sha256 == job_file.version
            and existing.principals == job_file.principals
            and (existing.document_metadata or None) == job_file.document_metadata
            and job_file.ocr_mode != "force"  # asked to read the scans again
        ):
            return _Outcome(
                FileState.SKIPPED,
                error="unchanged: same content already indexed",
                document_id=document_id,
                chunk_count=existing.chunk_count,
            )
    data = Path(staged).read_bytes()
    with span("parse", {"ragkb.file_type": file_type(job_file.path), "ragkb.bytes": len(data)}):
        parsed = parse_document(
            job_file.path, data, ocr="force" if job_file.ocr_mode == "force" else "auto"
        )
    with span("chunk") as chunking:
        chunks = chunk_document(
            parsed,
            max_tokens=deps.chunking.max_tokens,
            overlap_tokens=deps.chunking.overlap_tokens,
            count_tokens=deps.embedder.count_tokens,
        )
        chunking.set_attribute("ragkb.chunks", len(chunks))
    return _Prepared(job_file, document_id, parsed, chunks, len(data))


def _document_version(
    item: _Prepared, vectors: Sequence[list[float]], lexical_neighbours: int
) -> DocumentVersion:
    tenant_id, version = item.file.tenant_id, item.file.version
    points = [
        ChunkPoint(
            point_id=point_id_for(tenant_id, item.document_id, version, chunk.index),
            tenant_id=tenant_id,
            document_id=item.document_id,
            version=version,
            dense_vector=vector,
            payload={
                "path": item.file.path,
                "title": item.parsed.title,
                "content_type": item.parsed.content_type,
                "chunk_index": chunk.index,
                "page": chunk.page,
                "section": chunk.section,
                "char_start": chunk.char_start,
                "char_end": chunk.char_end,
                "text": chunk.text,
                "meta": item.file.document_metadata or {},
                "principals": item.file.principals,
            },
        )
        for chunk, vector in zip(item.chunks, vectors, strict=True)
    ]
    points = with_lexical_context(points, lexical_neighbours)
    return DocumentVersion(tenant_id, item.document_id, version, points)


def _record(
    deps: IngestDependencies, prepared: list[_Prepared], outcomes: dict[str, _Outcome]
) -> None:
    """Documents and file states of the batch, in one transaction (after every upsert)."""
    results = dict(outcomes)
    staged_paths: list[str] = []
    with deps.session_factory() as session:
        for item in prepared:
            document = session.get(Document, item.document_id)
            if document is None:
                document = Document(
                    id=item.document_id, tenant_id=item.file.tenant_id, path=item.file.path
                )
                session.add(document)
            document.version_sha256 = item.file.version
            document.content_type = item.parsed.content_type
            document.size_bytes = item.size_bytes
            document.chunk_count = len(item.chunks)
            document.title = (item.parsed.title or "")[:500] or None
            document.principals = item.file.principals
            document.document_metadata = item.file.document_metadata
            document.updated_at = utcnow()
            results[item.file.file_id] = _Outcome(
                FileState.DONE, document_id=item.document_id, chunk_count=len(item.chunks)
            )
        if results:
            rows = session.scalars(select(JobFile).where(JobFile.id.in_(results))).all()
            for job_file in rows:
                outcome = results[job_file.id]
                mark_finished(
                    job_file,
                    outcome.state,
                    error=outcome.error,
                    document_id=outcome.document_id,
                    chunk_count=outcome.chunk_count,
                )
                if _keeps_bytes(deps, outcome.state):
                    continue
                if job_file.staged_path:
                    staged_paths.append(job_file.staged_path)
                job_file.staged_path = None
        session.commit()
    for staged in staged_paths:
        Path(staged).unlink(missing_ok=True)


def _keeps_bytes(deps: IngestDependencies, state: FileState) -> bool:
    return state == FileState.FAILED and deps.keep_failed_files


def embedding_text(chunk: Chunk) -> str:
    return section_and_text(chunk.section, chunk.text)


def section_and_text(section: object, text: str) -> str:
    # The section heading gives a passage its topic; it is embedded but not part of the span.
    if section and not text.startswith(str(section)):
        return f"{section}\n{text}"
    return text


def fail_job_files(file_ids: Sequence[str], deps: IngestDependencies, *, reason: str) -> None:
    """Record unfinished files as failed after an unexpected error (the job goes on)."""
    with deps.session_factory() as session:
        rows = session.scalars(
            select(JobFile).where(JobFile.id.in_(file_ids)).options(selectinload(JobFile.job))
        ).all()
        staged_paths = []
        for job_file in rows:
            if FileState(job_file.state).finished:
                continue
            mark_finished(job_file, FileState.FAILED, error=reason)
            if _keeps_bytes(deps, FileState.FAILED):
                continue
            if job_file.staged_path:
                staged_paths.append(job_file.staged_path)
            job_file.staged_path = None
        session.commit()
    for staged in staged_paths:
        Path(staged).unlink(missing_ok=True)


def fail_job_file(file_id: str, deps: IngestDependencies, *, reason: str) -> None:
    """Record a file as failed after an unexpected error (the job goes on with the others)."""
    fail_job_files([file_id], deps, reason=reason)
