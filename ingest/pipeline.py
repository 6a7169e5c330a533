"""A batch of staged files in, indexed chunks out: parse → chunk → embed → upsert → record.

Files come a batch at a time (one Celery task per batch) and each changes state as it finishes:
a file is claimed, parsed and chunked on its own (in a limited child process in the services); a
parse failure is recorded at once; parsed files are embedded together once their chunks fill an
encoder batch (or a few seconds have passed), then, under the write locks of their documents,
each version still the newest accepted one is stored (old versions removed, one store call) and
recorded in one transaction (ingest.versions). Idempotent: point ids are deterministic and a
finished file is never claimed again; a file claimed `parse_attempts` times without finishing
(its worker stopped each time) is failed instead of claimed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from opentelemetry import trace
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from core.embedding import Embedder
from core.models import Document, FileState, JobFile, utcnow
from core.redaction import redact_turns_drawing_on
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
from ingest.jobs import claim_file, give_back_attempts, mark_finished
from ingest.originals import Originals
from ingest.parse import ParsedDocument, ParseError, parse_document
from ingest.pdf import OcrMode
from ingest.versions import forget_deletes, lock_documents, newest_sequences, next_sequences


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
    # A failed file's staged bytes stay on disk (for a retry without a new upload).
    keep_failed_files: bool = False
    # Where each stored version's original bytes are kept (None: not kept).
    originals: Originals | None = None


class IndexSwitchedError(ConnectionError):
    """The active index changed while a task embedded: a transient fault (the task retries)."""


@dataclass(frozen=True)
class _Claimed:
    file_id: str
    tenant_id: str
    path: str
    version: str
    sequence: int
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

    Each file's version is applied only if it is the newest accepted write of its path
    (ingest.versions): an older one ends `skipped` as superseded, whichever worker finishes
    first. `reclaim` lets a retry of the same task take back files it had claimed before a
    transient fault (they are `running`, but no other task carries them).
    """
    states: dict[str, FileState] = {}
    # Of two versions of a path in one batch only the newest accepted is stored: two versions in
    # one store call would each delete the other's points. Read before any file is claimed, so
    # each file is still claimed right before it is parsed.
    newest_in_batch = _newest_in_batch(file_ids, deps)
    pending: list[_Claimed] = []
    rest = list(file_ids)
    may_skip = True
    while pending or rest:
        redo = _process(
            pending, rest, deps, states, newest_in_batch, may_skip=may_skip, reclaim=reclaim
        )
        # Files thought unchanged whose document moved on meanwhile are indexed after all.
        pending, rest = redo, []
        may_skip = False
    return states


def _newest_in_batch(file_ids: Sequence[str], deps: IngestDependencies) -> dict[str, int]:
    """The highest write sequence per document among the batch's numbered files."""
    with deps.session_factory() as session:
        rows = session.execute(
            select(JobFile.tenant_id, JobFile.path, JobFile.sequence).where(
                JobFile.id.in_(file_ids), JobFile.sequence.is_not(None)
            )
        ).all()
    newest: dict[str, int] = {}
    for tenant_id, path, sequence in rows:
        document_id = document_id_for(tenant_id, path)
        newest[document_id] = max(newest.get(document_id, 0), sequence or 0)
    return newest


def _process(
    claimed: list[_Claimed],
    to_claim: list[str],
    deps: IngestDependencies,
    states: dict[str, FileState],
    newest_in_batch: dict[str, int],
    *,
    may_skip: bool,
    reclaim: bool,
) -> list[_Claimed]:
    """Parse the claimed files, then claim and parse the others one at a time; parsed files are
    stored together once their chunks fill an encoder batch or the oldest has waited a while.
    Returns the files thought unchanged whose document changed since (to index after all)."""
    redo: list[_Claimed] = []
    group: list[_Prepared] = []
    unchanged: list[_Claimed] = []
    waiting_since = 0.0

    def take_next() -> _Claimed | None:
        while to_claim:
            file_id = to_claim.pop(0)
            job_file, state = _claim(file_id, deps, reclaim=reclaim)
            if job_file is None:
                states[file_id] = state
                continue
            trace.get_current_span().set_attribute(TENANT_ATTRIBUTE, job_file.tenant_id)
            document_id = document_id_for(job_file.tenant_id, job_file.path)
            if job_file.sequence < newest_in_batch.get(document_id, job_file.sequence):
                _record_outcomes(deps, {file_id: _superseded(document_id)}, states)
                continue
            return job_file
        return None

    queue = list(claimed)
    while True:
        job_file = queue.pop(0) if queue else take_next()
        if job_file is None:
            break
        document_id = document_id_for(job_file.tenant_id, job_file.path)
        in_group = {item.document_id for item in group} | {
            document_id_for(f.tenant_id, f.path) for f in unchanged
        }
        if group and (
            document_id in in_group
            or time.monotonic() - waiting_since >= FLUSH_AFTER_S
            or _staged_size(job_file) >= FLUSH_BEFORE_BYTES
        ):
            # A slow parse next does not hold parsed files back.
            redo += _flush(group, unchanged, deps, states)
            group, unchanged = [], []
        failed: dict[str, _Outcome] = {}
        prepared, same = _prepare_all([job_file], deps, failed, may_skip=may_skip)
        if failed:
            _record_outcomes(deps, failed, states)  # the failure or skip shows at once
            continue
        unchanged += same
        if prepared and not group:
            waiting_since = time.monotonic()
        group += prepared
        if group and (
            sum(len(item.chunks) for item in group) >= FLUSH_CHUNKS
            or time.monotonic() - waiting_since >= FLUSH_AFTER_S
        ):
            redo += _flush(group, unchanged, deps, states)
            group, unchanged = [], []
    redo += _flush(group, unchanged, deps, states)
    return redo


def _staged_size(job_file: _Claimed) -> int:
    try:
        return Path(job_file.staged_path).stat().st_size if job_file.staged_path else 0
    except OSError:
        return 0


def _record_outcomes(
    deps: IngestDependencies, outcomes: dict[str, _Outcome], states: dict[str, FileState]
) -> None:
    _, recorded = _apply(deps, [], [], [], outcomes)
    states.update((file_id, outcome.state) for file_id, outcome in recorded.items())


def _flush(
    prepared: list[_Prepared],
    unchanged: list[_Claimed],
    deps: IngestDependencies,
    states: dict[str, FileState],
) -> list[_Claimed]:
    """Embed, store and record as done (the files' points are in the store before they show);
    returns the files thought unchanged whose document changed since."""
    if not prepared and not unchanged:
        return []
    vectors = _embed(prepared, deps)
    if prepared and deps.still_active is not None and not deps.still_active():
        raise IndexSwitchedError("the active vector index changed; embedding again")
    versions = [
        _document_version(item, item_vectors, deps.chunking.lexical_neighbours)
        for item, item_vectors in zip(prepared, vectors, strict=True)
    ]
    redo, recorded = _apply(deps, prepared, versions, unchanged, {})
    states.update((file_id, outcome.state) for file_id, outcome in recorded.items())
    return redo


def _prepare_all(
    files: Sequence[_Claimed],
    deps: IngestDependencies,
    outcomes: dict[str, _Outcome],
    *,
    may_skip: bool,
) -> tuple[list[_Prepared], list[_Claimed]]:
    """Parse and chunk each file; the files superseded or unchanged need neither."""
    prepared: list[_Prepared] = []
    unchanged: list[_Claimed] = []
    with deps.session_factory() as session:
        ids = {f.file_id: document_id_for(f.tenant_id, f.path) for f in files}
        newest = newest_sequences(session, ids.values())
        existing = {i: session.get(Document, i) for i in ids.values()}
        session.expunge_all()
    for job_file in files:
        document_id = ids[job_file.file_id]
        try:
            result = _prepare(
                job_file, document_id, newest[document_id], existing[document_id], deps,
                may_skip=may_skip,
            )  # fmt: skip
        except ParseError as exc:
            result = _Outcome(FileState.FAILED, error=str(exc))
        except RecursionError:
            result = _Outcome(FileState.FAILED, error="the file is nested too deeply to parse")
        except MemoryError:
            result = _Outcome(
                FileState.FAILED, error="the file needs more memory to parse than is free"
            )
        except (OperationalError, ConnectionError, TimeoutError):
            raise  # the database or the store did not answer: the task retries, nothing fails
        except Exception as exc:  # a parser bug on one file must not stop the others
            logger.exception("parsing %s failed", job_file.path)
            result = _Outcome(FileState.FAILED, error=f"internal error ({type(exc).__name__})")
        if isinstance(result, _Prepared):
            prepared.append(result)
        elif result is _UNCHANGED:
            unchanged.append(job_file)
        else:
            outcomes[job_file.file_id] = result
    return prepared, unchanged


def _embed(prepared: Sequence[_Prepared], deps: IngestDependencies) -> list[list[list[float]]]:
    """Every chunk's vector, per file; one encoder call for the files."""
    texts = [embedding_text(chunk) for item in prepared for chunk in item.chunks]
    # Repeated texts (boilerplate, templates, copies) are encoded once; sentence-transformers
    # sorts by length inside the call.
    unique = list(dict.fromkeys(texts))
    with span("embed", {"gen_ai.operation.name": "embeddings", "ragkb.texts": len(unique)}):
        vectors_of = deps.embedder.embed_passages(unique, background=True)
        by_text = dict(zip(unique, vectors_of, strict=True))
    vectors = [by_text[text] for text in texts]
    per_file: list[list[list[float]]] = []
    offset = 0
    for item in prepared:
        per_file.append(vectors[offset : offset + len(item.chunks)])
        offset += len(item.chunks)
    return per_file


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
        if row.sequence is None:
            # Queued before write sequences existed: numbered now, as it is claimed.
            row.sequence = next_sequences(session, 1)[0]
        session.commit()
        return (
            _Claimed(
                file_id=row.id,
                tenant_id=row.tenant_id,
                path=row.path,
                version=row.sha256 or "",
                sequence=row.sequence,
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


# `_prepare`'s answer for a file whose version looks stored already (checked again under the
# document's lock before the file is recorded as skipped).
_UNCHANGED = _Outcome(FileState.SKIPPED, error="unchanged: same content already indexed")


def _prepare(
    job_file: _Claimed,
    document_id: str,
    newest: int,
    existing: Document | None,
    deps: IngestDependencies,
    *,
    may_skip: bool,
) -> _Prepared | _Outcome:
    """Parse and chunk one file, given its document's newest write and row (read unlocked)."""
    staged = job_file.staged_path
    if staged is None or not Path(staged).is_file():
        return _Outcome(FileState.FAILED, error="the uploaded file is missing")
    # Sequences only grow: superseded now is superseded for good (no lock needed).
    if newest > job_file.sequence:
        return _superseded(document_id)
    if (
        may_skip
        and job_file.ocr_mode != "force"  # asked to read the scans again
        and existing is not None
        and _holds(existing, job_file, deps.store)
    ):
        return _UNCHANGED
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


def _holds(document: Document, job_file: _Claimed, store: VectorStore) -> bool:
    """The row holds this file's bytes, access list and metadata, and the store holds every
    chunk of that version (a row alone is not proof: a lost write would be skipped forever).
    Same bytes with another access list are re-indexed in place (same point ids)."""
    return (
        document.version_sha256 == job_file.version
        and document.principals == job_file.principals
        and (document.document_metadata or None) == job_file.document_metadata
        and store.count(
            tenant_id=document.tenant_id, document_id=document.id, version=document.version_sha256
        )
        == document.chunk_count
    )


def _superseded(document_id: str) -> _Outcome:
    return _Outcome(
        FileState.SKIPPED,
        error="superseded: a newer version of this path (or its delete) was accepted after it",
        document_id=document_id,
    )


def _document_version(
    item: _Prepared, vectors: Sequence[list[float]], lexical_neighbours: int
) -> DocumentVersion:
    file = item.file
    return document_version(
        tenant_id=file.tenant_id, document_id=item.document_id, version=file.version,
        path=file.path, parsed=item.parsed, chunks=item.chunks, vectors=vectors,
        metadata=file.document_metadata or {}, principals=file.principals,
        lexical_neighbours=lexical_neighbours,
    )  # fmt: skip


def document_version(
    *,
    tenant_id: str,
    document_id: str,
    version: str,
    path: str,
    parsed: ParsedDocument,
    chunks: Sequence[Chunk],
    vectors: Sequence[list[float]],
    metadata: dict[str, str],
    principals: list[str] | None,
    lexical_neighbours: int,
) -> DocumentVersion:
    """The points one version of a document is stored as: a chunk and its vector each, with
    the payload every read path expects, and each chunk's lexical context."""
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
                "meta": metadata,
                "principals": principals,
            },
        )
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]
    points = with_lexical_context(points, lexical_neighbours)
    return DocumentVersion(tenant_id, document_id, version, points)


def _apply(
    deps: IngestDependencies,
    prepared: Sequence[_Prepared],
    versions: Sequence[DocumentVersion],
    unchanged: Sequence[_Claimed],
    outcomes: dict[str, _Outcome],
) -> tuple[list[_Claimed], dict[str, _Outcome]]:
    """Store and record the batch under its documents' locks, in one transaction.

    Under the locks each file is checked again against its document's newest write: a newer
    one makes it superseded, the same one means an earlier attempt of this task applied it.
    Returns the files thought unchanged whose document changed since (to be indexed), and
    the outcome recorded for each other file.
    """
    results = dict(outcomes)
    redo: list[_Claimed] = []
    staged_paths: list[str] = []
    document_ids = [item.document_id for item in prepared]
    document_ids += [document_id_for(f.tenant_id, f.path) for f in unchanged]
    with deps.session_factory() as session:
        lock_documents(session, document_ids)
        newest_of = newest_sequences(session, document_ids)
        to_store: list[tuple[_Prepared, DocumentVersion]] = []
        for item, version in zip(prepared, versions, strict=True):
            newest = newest_of[item.document_id]
            if newest > item.file.sequence:
                results[item.file.file_id] = _superseded(item.document_id)
            elif newest == item.file.sequence:
                results[item.file.file_id] = _already_applied(session, item.document_id)
            else:
                to_store.append((item, version))
        for job_file in unchanged:
            document_id = document_id_for(job_file.tenant_id, job_file.path)
            newest = newest_of[document_id]
            existing = session.get(Document, document_id)
            if newest > job_file.sequence:
                results[job_file.file_id] = _superseded(document_id)
            elif existing is not None and _holds(existing, job_file, deps.store):
                # The same version, accepted again: the row takes the newer number, so a
                # version accepted in between cannot overwrite it later.
                existing.sequence = job_file.sequence
                if deps.originals is not None:
                    deps.originals.keep_same_version(
                        tenant_id=job_file.tenant_id, document_id=document_id,
                        version=job_file.version, staged=_path_or_none(job_file.staged_path),
                    )  # fmt: skip
                results[job_file.file_id] = replace(
                    _UNCHANGED, document_id=document_id, chunk_count=existing.chunk_count
                )
            else:
                redo.append(job_file)
        # One store call for the batch (new versions in, other versions out, one flush), while
        # the locks keep every other writer of these documents waiting.
        with span("upsert", {"db.system.name": "qdrant", "ragkb.documents": len(to_store)}):
            deps.store.replace_documents([version for _, version in to_store])
        forget_deletes(session, [item.document_id for item, _ in to_store])
        for item, _ in to_store:
            if deps.originals is not None:
                # Under the same locks as the points: the bytes dropped are never the newest's.
                deps.originals.store_version(
                    tenant_id=item.file.tenant_id, document_id=item.document_id,
                    version=item.file.version, staged=_path_or_none(item.file.staged_path),
                )  # fmt: skip
            _record_version(session, item)
            results[item.file.file_id] = _Outcome(
                FileState.DONE,
                # What was not read (an attachment) is said with the file, not indexed.
                error="; ".join(item.parsed.notes) or None,
                document_id=item.document_id,
                chunk_count=len(item.chunks),
            )
        if results:
            rows = session.scalars(select(JobFile).where(JobFile.id.in_(results))).all()
            for job_file_row in rows:
                outcome = results[job_file_row.id]
                mark_finished(
                    job_file_row,
                    outcome.state,
                    error=outcome.error,
                    document_id=outcome.document_id,
                    chunk_count=outcome.chunk_count,
                )
                if _keeps_bytes(deps, outcome.state):
                    continue
                if job_file_row.staged_path:
                    staged_paths.append(job_file_row.staged_path)
                job_file_row.staged_path = None
        session.commit()
    for staged in staged_paths:
        Path(staged).unlink(missing_ok=True)
    return redo, results


def _path_or_none(path: str | None) -> Path | None:
    return Path(path) if path else None


def _record_version(session: Session, item: _Prepared) -> None:
    document = session.get(Document, item.document_id)
    existed = document is not None
    if document is None:
        document = Document(id=item.document_id, tenant_id=item.file.tenant_id, path=item.file.path)
        session.add(document)
    document.version_sha256 = item.file.version
    document.sequence = item.file.sequence
    document.content_type = item.parsed.content_type
    document.size_bytes = item.size_bytes
    document.chunk_count = len(item.chunks)
    document.title = (item.parsed.title or "")[:500] or None
    if existed and document.principals != item.file.principals:
        # Answers that quoted it must not stay with end users it is now closed to.
        redact_turns_drawing_on(
            session, tenant_id=item.file.tenant_id, document_id=item.document_id,
            readable_by=item.file.principals, deleted=False,
        )  # fmt: skip
    document.principals = item.file.principals
    document.document_metadata = item.file.document_metadata
    document.updated_at = utcnow()


def _already_applied(session: Session, document_id: str) -> _Outcome:
    # An earlier attempt stored and recorded this very file (a redelivery after a lost ack).
    document = session.get(Document, document_id)
    return _Outcome(
        FileState.DONE,
        document_id=document_id,
        chunk_count=document.chunk_count if document is not None else 0,
    )


def _keeps_bytes(deps: IngestDependencies, state: FileState) -> bool:
    return state == FileState.FAILED and deps.keep_failed_files


def embedding_text(chunk: Chunk) -> str:
    return section_and_text(chunk.section, chunk.text)


def section_and_text(section: object, text: str) -> str:
    # The section heading gives a passage its topic; it is embedded but not part of the span.
    if section and not text.startswith(str(section)):
        return f"{section}\n{text}"
    return text


def release_after_transient_fault(file_ids: Sequence[str], deps: IngestDependencies) -> None:
    """The task's claims stop counting as attempts (ingest.jobs.give_back_attempts); best
    effort: when the database itself is the fault, the claims stay counted."""
    try:
        with deps.session_factory() as session:
            give_back_attempts(session, file_ids)
            session.commit()
    except (OperationalError, ConnectionError, TimeoutError) as exc:
        logger.warning("could not give back the attempts of %d files: %s", len(file_ids), exc)


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
