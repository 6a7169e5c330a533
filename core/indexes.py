"""The registry of vector indexes (one Qdrant collection per embedding model) kept in SQL.

Every process reads the ACTIVE row to decide which collection it queries and writes, and which
model embeds for it; `ragkb reindex` builds another collection beside it, then moves the pointer
in one transaction. Callers own the transaction (these functions flush, never commit).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import IndexState, VectorIndex, utcnow


@dataclass(frozen=True)
class IndexSpec:
    """What a process needs to serve a collection: its name and the model that embeds for it."""

    collection: str
    model_name: str
    dimension: int
    model_path: Path | None = None

    @classmethod
    def of(cls, row: VectorIndex) -> IndexSpec:
        return cls(
            collection=row.collection,
            model_name=row.model_name,
            dimension=row.dimension,
            model_path=Path(row.model_path) if row.model_path else None,
        )


class ReindexConflictError(RuntimeError):
    pass


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def active_index(session: Session) -> VectorIndex | None:
    return session.scalar(select(VectorIndex).where(VectorIndex.state == IndexState.ACTIVE))


def all_indexes(session: Session) -> list[VectorIndex]:
    return list(session.scalars(select(VectorIndex).order_by(VectorIndex.created_at)))


def _new_row(spec: IndexSpec) -> VectorIndex:
    return VectorIndex(
        collection=spec.collection,
        model_name=spec.model_name,
        model_path=str(spec.model_path) if spec.model_path else None,
        dimension=spec.dimension,
        points_copied=0,
    )


def ensure_active(session: Session, configured: IndexSpec) -> VectorIndex:
    """The active index; on a first start, the configured model's collection becomes it.

    After that the row wins over `RAGKB_EMBEDDING__MODEL`: the model changes with `ragkb
    reindex`, never by restarting with another setting (queries would not match the vectors).
    """
    row = active_index(session)
    if row is not None:
        return row
    row = session.get(VectorIndex, configured.collection)
    if row is None:
        row = _new_row(configured)
        session.add(row)
    row.state = IndexState.ACTIVE
    row.activated_at = utcnow()
    session.flush()
    return row


def request_build(session: Session, target: IndexSpec) -> VectorIndex:
    """Mark `target` as being built (a new collection, or a standby one to bring up to date)."""
    building = session.scalar(select(VectorIndex).where(VectorIndex.state == IndexState.BUILDING))
    if building is not None and building.collection != target.collection:
        raise ReindexConflictError(
            f"a reindex into {building.collection} is under way (runner: {building.runner}); "
            "wait for it, run its command again to resume it, or `ragkb reindex --cancel`"
        )
    row = session.get(VectorIndex, target.collection)
    if row is not None and row.state == IndexState.ACTIVE:
        raise ReindexConflictError(f"{target.collection} ({target.model_name}) is already active")
    if row is None:
        row = _new_row(target)
        session.add(row)
    elif row.dimension != target.dimension or row.model_name != target.model_name:
        raise ReindexConflictError(f"{target.collection} holds another model ({row.model_name})")
    row.state = IndexState.BUILDING
    row.error = None
    session.flush()
    return row


def claim_build(session: Session, collection: str, runner: str) -> bool:
    """Take a requested build; False when another process already runs it."""
    row = session.get(VectorIndex, collection, with_for_update=True)
    if row is None or row.state != IndexState.BUILDING or row.runner not in (None, runner):
        return False
    row.runner = runner
    row.error = None
    session.flush()
    return True


def pending_build(session: Session) -> VectorIndex | None:
    """A build waiting for a runner (asked for while the embedded store's owner was running)."""
    return session.scalar(
        select(VectorIndex).where(
            VectorIndex.state == IndexState.BUILDING,
            VectorIndex.runner.is_(None),
            VectorIndex.error.is_(None),
        )
    )


def activate(session: Session, collection: str) -> str | None:
    """Switch the pointer: `collection` becomes active, the active one standby (returned)."""
    now = utcnow()
    previous = active_index(session)
    if previous is not None:
        previous.state = IndexState.STANDBY
        previous.deactivated_at = now
    row = session.get(VectorIndex, collection)
    if row is None:
        raise ReindexConflictError(f"no index {collection}")
    row.state = IndexState.ACTIVE
    row.activated_at = now
    row.runner = None
    session.flush()
    return previous.collection if previous is not None else None


def record_failure(session: Session, collection: str, error: str) -> None:
    row = session.get(VectorIndex, collection)
    if row is not None:
        row.error = error[:2000]
        row.runner = None
        session.flush()
