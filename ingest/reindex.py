"""`ragkb reindex --model M`: a new model's collection built beside the active one, then switched.

1. The target collection is filled from the active one: every tenant's points are scrolled, their
   chunk text re-embedded with the new model and upserted with the same ids and payloads (the
   chunks, their spans and access lists stay exactly as they were; nothing is parsed again).
2. Ingest goes on meanwhile and writes to the active collection only. Catch-up passes then copy
   the documents whose SQL row changed since the previous pass began (new versions, new access
   lists) and delete from the target the documents that no longer exist, until a pass finds
   nothing to do.
3. The pointer (the `vector_indexes` row, and a Qdrant alias where the store has them) moves in
   one transaction. Each process picks it up on its next poll; an ingest task that embedded with
   the old model finds at upsert time that its index is no longer active and is retried with the
   new one. A last pass, after the processes have had time to switch, copies what old-model
   tasks stored just before the switch.
4. The old collection is kept (standby) until `--drop-old`, so a rollback is a reindex back to it
   that copies only what changed since it was switched away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.embedding import Embedder
from core.index_set import IndexSet
from core.indexes import (
    IndexSpec,
    ReindexConflictError,
    activate,
    claim_build,
    record_failure,
    this_process,
)
from core.models import Document, Tenant, VectorIndex, utcnow
from core.vectorstore import (
    DOCUMENT_FIELD,
    METADATA_FIELD,
    PRINCIPALS_FIELD,
    PUBLIC_PRINCIPAL,
    VERSION_FIELD,
    ChunkPoint,
    StoredPoint,
    VectorStore,
    with_lexical_context,
)
from ingest.versions import lock_documents

logger = logging.getLogger(__name__)

# Rows are stamped with the clock of the process that wrote them: passes look back this much
# further, so a writer's clock a little behind this one's cannot hide a change.
CLOCK_SKEW = timedelta(seconds=60)
MAX_CATCH_UP_PASSES = 10


@dataclass
class ReindexReport:
    points_copied: int = 0
    documents_caught_up: int = 0
    documents_pruned: int = 0
    passes: int = 0
    switched_from: str | None = None
    seconds: float = 0.0


def embedding_text_of(payload: dict[str, object]) -> str:
    """What ingest embedded for a chunk (see `ingest.pipeline.embedding_text`)."""
    from ingest.pipeline import section_and_text

    return section_and_text(payload.get("section"), str(payload.get("text", "")))


def copy_points(
    points: Sequence[StoredPoint],
    *,
    target: VectorStore,
    embedder: Embedder,
    lexical_neighbours: int,
) -> int:
    """Re-embed points with the target's model and upsert them into the target (same ids).

    Whole document versions are expected: each chunk's lexical context (its neighbours' text,
    which the stored payload does not keep) is rebuilt from the other chunks given with it.
    """
    chunks = reembed(points, embedder=embedder, lexical_neighbours=lexical_neighbours)
    target.upsert(chunks)
    return len(chunks)


def reembed(
    points: Sequence[StoredPoint], *, embedder: Embedder, lexical_neighbours: int
) -> list[ChunkPoint]:
    """The points with vectors of `embedder`'s model, same ids and payloads (see copy_points)."""
    if not points:
        return []
    texts = [embedding_text_of(p.payload) for p in points]
    unique = list(dict.fromkeys(texts))
    by_text = dict(zip(unique, embedder.embed_passages(unique, background=True), strict=True))
    versions: dict[tuple[str, str], list[ChunkPoint]] = {}
    for point, text in zip(points, texts, strict=True):
        chunk = point.as_chunk(by_text[text])
        versions.setdefault((chunk.document_id, chunk.version), []).append(chunk)
    return [
        chunk
        for chunks in versions.values()
        for chunk in with_lexical_context(chunks, lexical_neighbours)
    ]


def tenant_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))


def copy_all(
    *,
    session_factory: sessionmaker[Session],
    source: VectorStore,
    target: VectorStore,
    embedder: Embedder,
    batch: int,
    lexical_neighbours: int,
    on_progress: Callable[[int], None] = lambda _: None,
) -> int:
    """Every tenant's points from source to target; returns how many were copied.

    Scrolling returns points in id order, so a page holds pieces of many documents; each
    document met is read whole (its chunks' lexical context needs its neighbours) and copied
    once, in batches of about `batch` points.
    """
    with session_factory() as session:
        tenants = tenant_ids(session)
    copied = 0
    for tenant_id in tenants:
        seen: set[str] = set()
        pending: list[StoredPoint] = []
        offset: str | None = None
        while True:
            page, offset = source.scroll(tenant_id=tenant_id, offset=offset, limit=batch)
            for point in page:
                document_id = str(point.payload[DOCUMENT_FIELD])
                if document_id in seen:
                    continue
                seen.add(document_id)
                pending.extend(_all_points(source, tenant_id, document_id))
                if len(pending) >= batch:
                    copied += copy_points(
                        pending, target=target, embedder=embedder,
                        lexical_neighbours=lexical_neighbours,
                    )  # fmt: skip
                    pending = []
                    on_progress(copied)
            if offset is None:
                break
        copied += copy_points(
            pending, target=target, embedder=embedder, lexical_neighbours=lexical_neighbours
        )
        on_progress(copied)
    return copied


def catch_up(
    *,
    session_factory: sessionmaker[Session],
    source: VectorStore,
    target: VectorStore,
    embedder: Embedder,
    since: datetime,
    prune: bool,
    lexical_neighbours: int,
) -> tuple[int, int]:
    """Copy documents whose row changed since `since`; with `prune`, delete from the target the
    documents that have no row any more. Returns (documents copied, documents pruned).

    A document is copied only when the source holds its row's version completely, with the
    row's access list and metadata, and the target does not: a version stored by a process
    already switched to the target is never overwritten from the source, and the pass after the
    switch, which runs beside live ingest and deletes, touches only what old-model tasks stored
    late. Same bytes re-uploaded with another access list keep their version (and point ids), so
    the access list is compared too: otherwise the target would keep the old list, and an end
    user the document was closed to would read it again after the switch (or a rollback). A
    document deleted or changed while it was being copied loses the copy again (its row is read
    once more afterwards).
    """
    with session_factory() as session:
        changed = list(
            session.scalars(select(Document).where(Document.updated_at >= since - CLOCK_SKEW))
        )
        tenants = tenant_ids(session) if prune else []
        known: dict[str, set[str]] = {}
        if prune:
            for tenant_id, document_id in session.execute(select(Document.tenant_id, Document.id)):
                known.setdefault(tenant_id, set()).add(document_id)
        session.expunge_all()
    copied = 0
    for document in changed:
        version = document.version_sha256
        in_target = _version_points(target, document.tenant_id, document.id, version)
        if _holds_row(in_target, document):
            continue  # already there (copied by an earlier pass, or stored by new-model ingest)
        current = _version_points(source, document.tenant_id, document.id, version)
        if not _holds_row(current, document):
            continue  # not (or no longer) in the source: whoever stored it stored it elsewhere
        # Embedded outside the document's lock (it can take seconds); written under it, so a
        # new-model ingest or a delete of the document cannot interleave with the write and
        # its cleanup (ingest.versions).
        chunks = reembed(current, embedder=embedder, lexical_neighbours=lexical_neighbours)
        if _write_copy(session_factory, target, document, chunks):
            copied += 1
    pruned = 0
    for tenant_id in tenants:
        for document_id in target.document_counts(tenant_id=tenant_id):
            if document_id not in known.get(tenant_id, set()) and _prune(
                session_factory, target, tenant_id, document_id
            ):
                pruned += 1
    return copied, pruned


def _prune(
    session_factory: sessionmaker[Session], target: VectorStore, tenant_id: str, document_id: str
) -> bool:
    """Delete a document without a row from the target, unless its first version is being
    stored right now (its points exist before its row does; the lock waits for the row)."""
    with session_factory() as session:
        lock_documents(session, [document_id])
        if session.get(Document, document_id) is not None:
            return False
        target.delete_document(tenant_id=tenant_id, document_id=document_id)
        session.commit()
    return True


def _write_copy(
    session_factory: sessionmaker[Session],
    target: VectorStore,
    document: Document,
    chunks: Sequence[ChunkPoint],
) -> bool:
    """Store a copied version in the target if its row still holds it; False when the
    document was deleted meanwhile.

    A document deleted meanwhile is deleted from the target too (its delete may have reached
    the target before an earlier copy); a row that moved on is left to the next pass.
    """
    with session_factory() as session:
        lock_documents(session, [document.id])
        now = session.get(Document, document.id)
        if now is None:
            target.delete_document(tenant_id=document.tenant_id, document_id=document.id)
            return False
        if _access(now) != _access(document) or now.version_sha256 != document.version_sha256:
            return True  # changed since this pass began: the next pass copies it
        target.upsert(chunks)
        # The row's version stays; older ones go (nothing newer can be there: the lock).
        target.delete_document(
            tenant_id=document.tenant_id, document_id=document.id, keep_version=now.version_sha256
        )
        session.commit()
    return True


def _access(document: Document) -> tuple[list[str], dict[str, str]]:
    """The access list and metadata a document's points carry, as the store keeps them."""
    principals = [PUBLIC_PRINCIPAL] if document.principals is None else document.principals
    return sorted(set(principals)), document.document_metadata or {}


def _holds_row(points: Sequence[StoredPoint], document: Document) -> bool:
    """Every chunk of the row's version, each with the row's access list and metadata."""
    principals, metadata = _access(document)
    return len(points) == document.chunk_count and all(
        p.payload.get(PRINCIPALS_FIELD) == principals
        and (p.payload.get(METADATA_FIELD) or {}) == metadata
        for p in points
    )


def _version_points(
    store: VectorStore, tenant_id: str, document_id: str, version: str
) -> list[StoredPoint]:
    points = _all_points(store, tenant_id, document_id)
    return [p for p in points if p.payload.get(VERSION_FIELD) == version]


def _all_points(store: VectorStore, tenant_id: str, document_id: str) -> list[StoredPoint]:
    points: list[StoredPoint] = []
    offset: str | None = None
    while True:
        page, offset = store.scroll(
            tenant_id=tenant_id, document_id=document_id, offset=offset, limit=256
        )
        points.extend(page)
        if offset is None:
            return points


def build_and_catch_up(
    *,
    session_factory: sessionmaker[Session],
    source: VectorStore,
    target: VectorStore,
    embedder: Embedder,
    batch: int,
    resume_since: datetime | None,
    report: ReindexReport,
    lexical_neighbours: int,
    on_progress: Callable[[int], None] = lambda _: None,
) -> datetime:
    """Fill the target until a catch-up pass finds nothing; returns when that pass began.

    `resume_since`: the target was a copy up to that moment (a standby index), so only the
    changes since are copied instead of everything.
    """
    pass_started = utcnow()
    if resume_since is None:
        report.points_copied = copy_all(
            session_factory=session_factory, source=source, target=target, embedder=embedder,
            batch=batch, lexical_neighbours=lexical_neighbours, on_progress=on_progress,
        )  # fmt: skip
        since = pass_started
    else:
        since = resume_since
    for _ in range(MAX_CATCH_UP_PASSES):
        this_pass = utcnow()
        copied, pruned = catch_up(
            session_factory=session_factory, source=source, target=target, embedder=embedder,
            since=since, prune=True, lexical_neighbours=lexical_neighbours,
        )  # fmt: skip
        report.passes += 1
        report.documents_caught_up += copied
        report.documents_pruned += pruned
        since = this_pass
        # Documents changed just before the pass began are seen again by the next one (clock
        # skew margin), so "nothing new" is judged on documents changed during the pass.
        if _changed_since(session_factory, this_pass) == 0:
            break
    return since


def final_pass(
    *,
    session_factory: sessionmaker[Session],
    source: VectorStore,
    target: VectorStore,
    embedder: Embedder,
    since: datetime,
    settle_s: float,
    report: ReindexReport,
    lexical_neighbours: int,
) -> None:
    """After the switch: wait for every process to follow it, then copy what old-model tasks
    stored meanwhile. No pruning here: the target is live and may hold documents whose row is
    not yet committed."""
    time.sleep(settle_s)
    copied, _ = catch_up(
        session_factory=session_factory, source=source, target=target, embedder=embedder,
        since=since, prune=False, lexical_neighbours=lexical_neighbours,
    )  # fmt: skip
    report.passes += 1
    report.documents_caught_up += copied


def _changed_since(session_factory: sessionmaker[Session], moment: datetime) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(Document).where(Document.updated_at >= moment)
        return int(session.scalar(query) or 0)


def run_reindex(
    *,
    indexes: IndexSet,
    session_factory: sessionmaker[Session],
    collection: str,
    batch: int,
    settle_s: float,
    lexical_neighbours: int,
    alias: str | None = None,
    after_switch: Callable[[], object] | None = None,
) -> ReindexReport:
    """Build the requested index `collection`, switch to it, then run the last catch-up pass."""
    started = time.perf_counter()
    runner = this_process()
    with session_factory() as session:
        if not claim_build(session, collection, runner):
            raise ReindexConflictError(f"{collection} awaits no build (or another runs it)")
        session.commit()
        row = session.get(VectorIndex, collection)
        assert row is not None
        target_spec, resume_since = IndexSpec.of(row), row.deactivated_at
    report = ReindexReport()
    source_spec = indexes.active()
    source, target = indexes.store(source_spec), indexes.store(target_spec)
    embedder = indexes.embedder(target_spec)
    logger.info(
        "reindex %s -> %s (%s)", source_spec.collection, collection,
        "catching up" if resume_since else "full copy",
    )  # fmt: skip

    def progress(copied: int) -> None:
        with session_factory() as session:
            row = session.get(VectorIndex, collection)
            if row is not None:
                row.points_copied = copied
                session.commit()

    try:
        since = build_and_catch_up(
            session_factory=session_factory, source=source, target=target, embedder=embedder,
            batch=batch, resume_since=resume_since, report=report,
            lexical_neighbours=lexical_neighbours, on_progress=progress,
        )  # fmt: skip
        with session_factory() as session:
            report.switched_from = activate(session, collection)
            session.commit()
    except Exception as exc:
        with session_factory() as session:
            record_failure(session, collection, f"{type(exc).__name__}: {exc}")
            session.commit()
        raise
    if alias:
        target.publish_alias(alias)
    if after_switch is not None:
        after_switch()
    final_pass(
        session_factory=session_factory, source=source, target=target, embedder=embedder,
        since=since, settle_s=settle_s, report=report, lexical_neighbours=lexical_neighbours,
    )  # fmt: skip
    report.seconds = round(time.perf_counter() - started, 1)
    logger.info("reindex done: %s", report)
    return report
