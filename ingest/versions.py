"""Which version of a document wins: write sequences, per-document locks and tombstones.

Every accepted file version (a job file, at upload) and every accepted delete takes the next
number of one database-wide sequence. A document row records the number of the version it
holds, a tombstone the number of the delete that removed it; a writer applies its version only
if its number is above both (`newest_sequences`), so versions of a path apply in the order they
were accepted, whatever order the workers finish in.

Store writes happen outside SQL transactions, so the check alone is not enough: a writer's
cleanup ("delete every other version") would remove the points of a newer version written
meanwhile. Every writer of a document (ingest, delete, reindex catch-up, reconcile) therefore
holds the document's lock from the check until its SQL commit, store writes included
(`lock_documents`): a PostgreSQL advisory lock per document, or SQLite's single write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.orm import Session

from core.models import Document, DocumentTombstone, FileState, JobFile, utcnow

# A tombstone younger than this is kept whatever the job files say: an upload numbered before
# the delete may still be in its (uncommitted) transaction, invisible to the check below. An
# upload's transaction lasts seconds; an hour leaves a wide margin.
TOMBSTONE_SETTLE = timedelta(hours=1)


def next_sequences(session: Session, count: int) -> list[int]:
    """`count` new write sequence numbers, increasing (also across processes).

    PostgreSQL: a sequence (never waits for another transaction). SQLite: a counter row; the
    update takes SQLite's write lock, held until this session commits.
    """
    if count <= 0:
        return []
    if _is_postgresql(session):
        rows = session.execute(
            text("SELECT nextval('ragkb_write_sequence') FROM generate_series(1, :n)"),
            {"n": count},
        )
        return sorted(int(value) for (value,) in rows)
    session.execute(text("UPDATE write_sequence SET value = value + :n WHERE id = 1"), {"n": count})
    last = int(session.execute(text("SELECT value FROM write_sequence WHERE id = 1")).scalar_one())
    return list(range(last - count + 1, last + 1))


def lock_documents(session: Session, document_ids: Iterable[str]) -> None:
    """Hold these documents' write locks until the session's transaction ends.

    PostgreSQL: transaction-level advisory locks, taken in one order so two batches cannot
    deadlock. SQLite: its one write lock (writers queue on `busy_timeout`), taken by a write
    that changes nothing; call it before the transaction has read anything.
    """
    ids = sorted(set(document_ids))
    if not ids:
        return
    if _is_postgresql(session):
        for key in sorted({_lock_key(document_id) for document_id in ids}):
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    session.execute(text("UPDATE write_sequence SET value = value WHERE id = 1"))


def newest_sequences(session: Session, document_ids: Iterable[str]) -> dict[str, int]:
    """The number of the newest write applied to each document: its version's or its
    delete's (0: never written); only a write numbered above it may change the document.
    Two queries for all; the document rows are loaded into the session on the way
    (`session.get` then needs no query)."""
    ids = sorted(set(document_ids))
    newest = dict.fromkeys(ids, 0)
    for start in range(0, len(ids), _IN_BATCH):
        part = ids[start : start + _IN_BATCH]
        for document in session.scalars(select(Document).where(Document.id.in_(part))):
            newest[document.id] = max(newest[document.id], document.sequence)
        tombstones = session.execute(
            select(DocumentTombstone.document_id, DocumentTombstone.sequence).where(
                DocumentTombstone.document_id.in_(part)
            )
        )
        for document_id, sequence in tombstones:
            newest[document_id] = max(newest[document_id], sequence)
    return newest


def record_delete(session: Session, *, tenant_id: str, document_id: str, sequence: int) -> None:
    """Remember a delete numbered `sequence`, so older uploads finishing later stay deleted."""
    tombstone = session.get(DocumentTombstone, document_id)
    if tombstone is None:
        session.add(
            DocumentTombstone(document_id=document_id, tenant_id=tenant_id, sequence=sequence)
        )
    elif tombstone.sequence < sequence:
        tombstone.sequence = sequence
        tombstone.deleted_at = utcnow()


def forget_deletes(session: Session, document_ids: Sequence[str]) -> None:
    """Newer versions were stored: their rows' sequences now say all the tombstones did."""
    for start in range(0, len(document_ids), _IN_BATCH):
        part = document_ids[start : start + _IN_BATCH]
        session.execute(delete(DocumentTombstone).where(DocumentTombstone.document_id.in_(part)))


def prune_tombstones(session: Session, *, tenant_id: str, now: datetime | None = None) -> int:
    """Delete the tenant's tombstones that no accepted upload can outlive any more; the number
    deleted. A tombstone is needed while a file numbered below it may still be applied: queued,
    running, or failed with its bytes kept for a retry (a retry keeps its number). Without
    pruning, every delete would leave a row forever. Run at each new job of the tenant."""
    open_files = select(func.min(JobFile.sequence)).where(
        JobFile.tenant_id == tenant_id,
        JobFile.sequence.is_not(None),
        or_(
            JobFile.state.in_([FileState.QUEUED, FileState.RUNNING]),
            and_(JobFile.state == FileState.FAILED, JobFile.staged_path.is_not(None)),
        ),
    )
    oldest_open = session.execute(open_files).scalar_one_or_none()
    conditions = [
        DocumentTombstone.tenant_id == tenant_id,
        DocumentTombstone.deleted_at < (now or utcnow()) - TOMBSTONE_SETTLE,
    ]
    if oldest_open is not None:
        conditions.append(DocumentTombstone.sequence < oldest_open)
    result = session.execute(delete(DocumentTombstone).where(*conditions))
    return int(getattr(result, "rowcount", 0) or 0)


# Ids per IN list: well under SQLite's bound on query parameters.
_IN_BATCH = 500


def _lock_key(document_id: str) -> int:
    # A signed 64-bit key (what pg_advisory_xact_lock takes); a collision only serialises two
    # documents needlessly.
    digest = hashlib.blake2b(f"ragkb.document:{document_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
