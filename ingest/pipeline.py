"""A batch of staged files in, indexed chunks out: parse → chunk → embed → upsert → record.

Files come a batch at a time (one Celery task per batch) and each changes state as it finishes:
a file is claimed right before it is parsed, a parse failure or a skip is recorded at once, and
parsed files are embedded and stored together once their chunks fill an encoder batch (or a few
seconds have passed), then recorded as done. Idempotent: point ids are deterministic and a
finished file is never claimed again; a file claimed `parse_attempts` times without finishing
(its worker stopped each time) is failed instead of claimed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

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
from ingest.pdf import OcrMode


class Parser(Protocol):
    def __call__(self, path: str, data: bytes, *, ocr: OcrMode = "auto") -> ParsedDocument: ...


# Parsed files wait for others to share an encoder call until their chunks reach this many, or
# until the oldest has waited this long: small files embed together, nobody waits for long.
FLUSH_CHUNKS = 256
FLUSH_AFTER_S = 2.0
# Parsed files are stored before a file this large is parsed (HTML or PDF: seconds a MB).
FLUSH_BEFORE_BYTES = 256 * 1024

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
    # How a file's bytes become a document: `ParserPool.parse` (a limited child process) in the
    # services; `parse_document` in this process where nothing else shares it (tests, tools).
    parse: Parser = parse_document
    parse_attempts: int = 3


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
    states: dict[str, FileState] = {}
    pending: list[_Prepared] = []
    waiting_since = 0.0
    for file_id in file_ids:
        claimed, state = _claim(file_id, deps, reclaim=reclaim)
        if claimed is None:
            states[file_id] = state
            continue
        trace.get_current_span().set_attribute(TENANT_ATTRIBUTE, claimed.tenant_id)
        if pending and (
            time.monotonic() - waiting_since >= FLUSH_AFTER_S
            or _staged_size(claimed) >= FLUSH_BEFORE_BYTES
        ):
            _store(pending, deps, states)  # a slow parse next does not hold parsed files back
            pending = []
        result = _prepare_one(claimed, deps)
        if isinstance(result, _Outcome):
            _record(deps, [], {file_id: result})  # the failure or skip shows at once
            states[file_id] = result.state
            continue
        if not pending:
            waiting_since = time.monotonic()
        pending.append(result)
        if (
            sum(len(item.chunks) for item in pending) >= FLUSH_CHUNKS
            or time.monotonic() - waiting_since >= FLUSH_AFTER_S
        ):
            _store(pending, deps, states)
            pending = []
    _store(pending, deps, states)
    return states


def _staged_size(job_file: _Claimed) -> int:
    try:
        return Path(job_file.staged_path).stat().st_size if job_file.staged_path else 0
    except OSError:
        return 0


def _prepare_one(job_file: _Claimed, deps: IngestDependencies) -> _Prepared | _Outcome:
    try:
        return _prepare(job_file, deps)
    except ParseError as exc:
        return _Outcome(FileState.FAILED, error=str(exc))
    except RecursionError:
        return _Outcome(FileState.FAILED, error="the file is nested too deeply to parse")
    except MemoryError:
        return _Outcome(FileState.FAILED, error="the file needs more memory to parse than is free")
    except Exception as exc:  # a parser bug on one file must not stop the others
        logger.exception("parsing %s failed", job_file.path)
        return _Outcome(FileState.FAILED, error=f"internal error ({type(exc).__name__})")


def _store(
    prepared: list[_Prepared], deps: IngestDependencies, states: dict[str, FileState]
) -> None:
    """Embed, store and record as done: the files' points are in the store before they show."""
    if not prepared:
        return
    # One encoder call for the files; sentence-transformers sorts by length inside it.
    texts = [embedding_text(chunk) for item in prepared for chunk in item.chunks]
    # Repeated texts (boilerplate, templates, copies) are encoded once.
    unique = list(dict.fromkeys(texts))
    with span("embed", {"gen_ai.operation.name": "embeddings", "ragkb.texts": len(unique)}):
        by_text = dict(zip(unique, deps.embedder.embed_passages(unique), strict=True))
    vectors = [by_text[text] for text in texts]
    if deps.still_active is not None and not deps.still_active():
        raise IndexSwitchedError("the active vector index changed; embedding again")
    versions: list[DocumentVersion] = []
    offset = 0
    for item in prepared:
        item_vectors = vectors[offset : offset + len(item.chunks)]
        versions.append(_document_version(item, item_vectors, deps.chunking.lexical_neighbours))
        offset += len(item.chunks)
    # One store call for the files: new versions in, other versions out, one flush to disk.
    with span("upsert", {"db.system.name": "qdrant", "ragkb.documents": len(versions)}):
        deps.store.replace_documents(versions)
    _record(deps, prepared, {})
    for item in prepared:
        states[item.file.file_id] = FileState.DONE


def _claim(
    file_id: str, deps: IngestDependencies, *, reclaim: bool
) -> tuple[_Claimed | None, FileState]:
    """The file, taken for processing; or None and its state (finished, or another worker's)."""
    stale_after = timedelta(0) if reclaim else deps.stale_after
    with deps.session_factory() as session:
        taken = claim_file(
            session, file_id=file_id, stale_after=stale_after, max_attempts=deps.parse_attempts
        )
        row = session.scalars(
            select(JobFile).where(JobFile.id == file_id).options(selectinload(JobFile.job))
        ).one_or_none()
        if row is None:  # deleted with its job
            session.commit()
            return None, FileState.FAILED
        if not taken:
            if give_up_after_attempts(row, stale_after=stale_after, attempts=deps.parse_attempts):
                _forget_staged(row)
            session.commit()
            return None, FileState(row.state)
        session.commit()
        return (
            _Claimed(
                file_id=row.id,
                tenant_id=row.tenant_id,
                path=row.path,
                version=row.sha256 or "",
                staged_path=row.staged_path,
                principals=row.job.principals,
                document_metadata=row.job.document_metadata,
                ocr_mode=row.job.ocr_mode,
            ),
            FileState.RUNNING,
        )


def give_up_after_attempts(row: JobFile, *, stale_after: timedelta, attempts: int) -> bool:
    """Fail a file that was claimed `attempts` times and is still unfinished (each attempt ended
    with its worker); True if it was failed. A file another worker is on is left alone."""
    if row.attempts < attempts or FileState(row.state).finished:
        return False
    started = row.started_at
    if row.state == FileState.RUNNING and started is not None:
        if started.tzinfo is None:
            started = started.replace(tzinfo=utcnow().tzinfo)
        if started >= utcnow() - stale_after:
            return False
    mark_finished(
        row,
        FileState.FAILED,
        error=f"not finished after {row.attempts} attempts: the worker stopped while processing "
        "the file each time (parsing it may take longer or more memory than the worker has); "
        "not retried",
    )
    return True


def _forget_staged(row: JobFile) -> None:
    if row.staged_path:
        Path(row.staged_path).unlink(missing_ok=True)
    row.staged_path = None


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
        parsed = deps.parse(
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
                FileState.DONE,
                # What was not read (an attachment) is said with the file, not indexed.
                error="; ".join(item.parsed.notes) or None,
                document_id=item.document_id,
                chunk_count=len(item.chunks),
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
                if job_file.staged_path:
                    staged_paths.append(job_file.staged_path)
                job_file.staged_path = None
        session.commit()
    for staged in staged_paths:
        Path(staged).unlink(missing_ok=True)


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
            if job_file.staged_path:
                staged_paths.append(job_file.staged_path)
            job_file.staged_path = None
        session.commit()
    for staged in staged_paths:
        Path(staged).unlink(missing_ok=True)


def fail_job_file(file_id: str, deps: IngestDependencies, *, reason: str) -> None:
    """Record a file as failed after an unexpected error (the job goes on with the others)."""
    fail_job_files([file_id], deps, reason=reason)
