"""Ingest jobs and their files in SQL: creation, progress, and per-file state changes."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, selectinload

from core.models import FileState, IngestJob, JobFile, new_id, utcnow
from core.principals import check_principals
from ingest.versions import next_sequences


@dataclass(frozen=True)
class JobProgress:
    total: int
    queued: int
    running: int
    done: int
    failed: int
    skipped: int
    chunks_indexed: int = 0
    files_per_s: float | None = None  # since the job's first file started

    @property
    def eta_s(self) -> float | None:
        remaining = self.total - self.finished
        if remaining == 0:
            return 0.0
        if not self.files_per_s:
            return None
        return remaining / self.files_per_s

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0

    @property
    def status(self) -> str:
        if self.finished == self.total:
            return "completed_with_errors" if self.failed else "completed"
        return "running" if self.running or self.finished else "queued"


def create_job(
    session: Session,
    *,
    tenant_id: str,
    principals: list[str] | None = None,
    document_metadata: dict[str, str] | None = None,
    ocr_mode: str = "auto",
) -> IngestJob:
    """A job whose files get `principals` (checked again here, whatever the front: `*` in an
    access list would make the documents public; InvalidPrincipalError) and metadata."""
    job = IngestJob(
        tenant_id=tenant_id,
        principals=sorted(set(check_principals(principals))) if principals is not None else None,
        document_metadata=document_metadata or None,
        ocr_mode=ocr_mode,
    )
    session.add(job)
    session.flush()
    return job


def add_job_file(
    session: Session,
    *,
    job: IngestJob,
    position: int,
    path: str,
    staged_path: str | None = None,
    size_bytes: int = 0,
    sha256: str | None = None,
    rejected_reason: str | None = None,
) -> JobFile:
    """Add a file to a job; a file refused at upload is recorded as failed with its reason."""
    job_file = JobFile(
        # Set here, not at flush, so a 10,000-file job needs one flush instead of 10,000.
        id=new_id(),
        job_id=job.id,
        tenant_id=job.tenant_id,
        position=position,
        path=path,
        staged_path=staged_path,
        size_bytes=size_bytes,
        sha256=sha256,
        state=FileState.FAILED if rejected_reason else FileState.QUEUED,
        error=rejected_reason,
        finished_at=utcnow() if rejected_reason else None,
    )
    session.add(job_file)
    return job_file


def number_versions(session: Session, files: Sequence[JobFile]) -> None:
    """Give each queued file its write sequence, in job order: the order its version was
    accepted in, which decides which version of a path wins (ingest.versions). Called last
    before the job is committed, so the numbers follow acceptance as closely as possible."""
    for job_file, sequence in zip(files, next_sequences(session, len(files)), strict=True):
        job_file.sequence = sequence


def get_job(session: Session, *, tenant_id: str, job_id: str) -> IngestJob | None:
    return session.scalar(
        select(IngestJob)
        .where(IngestJob.id == job_id, IngestJob.tenant_id == tenant_id)
        .options(selectinload(IngestJob.files))
    )


def job_progress(job: IngestJob, *, now: datetime | None = None) -> JobProgress:
    states = [FileState(f.state) for f in job.files]
    finished = [f for f in job.files if f.finished_at is not None and f.started_at is not None]
    files_per_s = None
    if finished:
        first_start = min(_aware(f.started_at) for f in finished if f.started_at is not None)
        last_end = max(_aware(f.finished_at) for f in finished if f.finished_at is not None)
        still_running = len(finished) < len(states)
        elapsed = ((now or utcnow()) if still_running else last_end) - first_start
        if elapsed.total_seconds() > 0:
            files_per_s = len(finished) / elapsed.total_seconds()
    return JobProgress(
        total=len(states),
        queued=states.count(FileState.QUEUED),
        running=states.count(FileState.RUNNING),
        done=states.count(FileState.DONE),
        failed=states.count(FileState.FAILED),
        skipped=states.count(FileState.SKIPPED),
        chunks_indexed=sum(f.chunk_count for f in job.files if f.state == FileState.DONE),
        files_per_s=files_per_s,
    )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes (stored as UTC); PostgreSQL returns aware ones.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def mark_finished(
    job_file: JobFile,
    state: FileState,
    *,
    error: str | None = None,
    document_id: str | None = None,
    chunk_count: int = 0,
    at: datetime | None = None,
) -> None:
    job_file.state = state
    job_file.error = error
    job_file.document_id = document_id
    job_file.chunk_count = chunk_count
    job_file.finished_at = at or utcnow()


def claim_file(
    session: Session, *, file_id: str, stale_after: timedelta, max_attempts: int | None = None
) -> bool:
    """Atomically take a file for processing: queued, or running for longer than `stale_after`
    (its worker died), and taken fewer than `max_attempts` times before. Two deliveries of the
    same task cannot both claim it. Each claim counts as an attempt."""
    now = utcnow()
    conditions = [
        JobFile.id == file_id,
        or_(
            JobFile.state == FileState.QUEUED,
            (JobFile.state == FileState.RUNNING) & (JobFile.started_at < now - stale_after),
        ),
    ]
    if max_attempts is not None:
        conditions.append(JobFile.attempts < max_attempts)
    result = session.execute(
        update(JobFile)
        .where(*conditions)
        .values(state=FileState.RUNNING, started_at=now, attempts=JobFile.attempts + 1)
    )
    return bool(getattr(result, "rowcount", 0))


def give_back_attempts(session: Session, file_ids: Sequence[str]) -> None:
    """Uncount the claim of files whose task ended on a transient fault (a service outage): the
    attempt limit is for files whose processing stops the worker, and an outage longer than
    a few task retries must not fail every file it caught."""
    session.execute(
        update(JobFile)
        .where(JobFile.id.in_(file_ids), JobFile.state == FileState.RUNNING, JobFile.attempts > 0)
        .values(attempts=JobFile.attempts - 1)
    )


def requeue_unfinished(session: Session) -> dict[str, list[str]]:
    """Files left queued or running by a process that stopped: all are queued again.

    Only for the process that is the sole consumer (the embedded default), at its start: no
    other worker can be running them. Returns the file ids by tenant.
    """
    session.execute(
        update(JobFile)
        .where(JobFile.state == FileState.RUNNING)
        .values(state=FileState.QUEUED, started_at=None)
    )
    by_tenant: dict[str, list[str]] = {}
    rows = session.execute(
        select(JobFile.tenant_id, JobFile.id)
        .where(JobFile.state == FileState.QUEUED)
        .order_by(JobFile.job_id, JobFile.position)
    )
    for tenant_id, file_id in rows:
        by_tenant.setdefault(tenant_id, []).append(file_id)
    return by_tenant


@dataclass(frozen=True)
class JobPage:
    jobs: list[IngestJob]
    next_cursor: str | None


class InvalidJobCursorError(ValueError):
    """A page cursor that this service did not hand out."""


def list_jobs(
    session: Session, *, tenant_id: str, limit: int, cursor: str | None = None
) -> JobPage:
    """The tenant's jobs, newest first; `cursor` is the `next_cursor` of the page before.

    Ordered by (created_at, id) descending, so jobs created in the same instant keep one order.
    Raises InvalidJobCursorError for a cursor this module did not hand out."""
    query = select(IngestJob).where(IngestJob.tenant_id == tenant_id)
    if cursor is not None:
        created_at, job_id = _decode_job_cursor(cursor)
        query = query.where(
            or_(
                IngestJob.created_at < created_at,
                (IngestJob.created_at == created_at) & (IngestJob.id < job_id),
            )
        )
    rows = list(
        session.scalars(
            query.order_by(IngestJob.created_at.desc(), IngestJob.id.desc())
            .limit(limit + 1)
            .options(selectinload(IngestJob.files))
        )
    )
    page, more = rows[:limit], len(rows) > limit
    return JobPage(page, _encode_job_cursor(page[-1]) if more and page else None)


def _encode_job_cursor(job: IngestJob) -> str:
    raw = f"{_aware(job.created_at).isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_job_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise InvalidJobCursorError("not a cursor from this API; start again without one") from exc
    return _aware(created_at), job_id


class NothingToRetryError(ValueError):
    """The job has no failed file whose bytes are still kept (the reason says which)."""


def requeue_failed(
    session: Session, job: IngestJob, *, kept_for: timedelta, now: datetime | None = None
) -> list[JobFile]:
    """Set the job's failed files back to `queued` from their staged bytes; the caller commits
    and enqueues them. A failed file whose bytes are gone, or older than `kept_for`, stays
    failed (its expired bytes are deleted here).

    Raises NothingToRetryError when no failed file can be queued again."""
    now = now or utcnow()
    failed = [f for f in job.files if FileState(f.state) == FileState.FAILED]
    if not failed:
        raise NothingToRetryError("the job has no failed files")
    requeued: list[JobFile] = []
    for job_file in failed:
        staged = Path(job_file.staged_path) if job_file.staged_path else None
        expired = job_file.finished_at is not None and now - _aware(job_file.finished_at) > kept_for
        if staged is not None and expired:
            staged.unlink(missing_ok=True)
            job_file.staged_path = None
            continue
        if staged is None or not staged.is_file():
            continue
        job_file.state = FileState.QUEUED
        job_file.error = None
        job_file.started_at = None
        job_file.finished_at = None
        requeued.append(job_file)
    if not requeued:
        raise NothingToRetryError(
            "the failed files' uploaded bytes are no longer kept (refused at upload, or older "
            f"than {kept_for.total_seconds() / 3600:g} h); upload them again"
        )
    session.flush()
    return requeued


def purge_expired_failed(
    session: Session, *, tenant_id: str, kept_for: timedelta, now: datetime | None = None
) -> int:
    """Delete the kept bytes of the tenant's files that failed more than `kept_for` ago; the
    number of files purged. Run at each new job of the tenant, so kept bytes never outlive the
    setting by more than the time until the tenant's next upload."""
    cutoff = (now or utcnow()) - kept_for
    return _purge_failed(session, tenant_id, JobFile.finished_at < cutoff)


def purge_failed_of_path(session: Session, *, tenant_id: str, path: str, below: int) -> int:
    """Delete the kept bytes of the tenant's failed files of `path` numbered below `below` (a
    delete's write sequence); the number purged. Run when the document at `path` is deleted:
    the bytes hold its text, and a retry of them could only end superseded by the delete. A file
    accepted after the delete keeps its bytes: its retry would create the document again."""
    return _purge_failed(session, tenant_id, JobFile.path == path, JobFile.sequence < below)


def _purge_failed(session: Session, tenant_id: str, *conditions: ColumnElement[bool]) -> int:
    """Delete the kept bytes of the tenant's failed files that meet `conditions`."""
    rows = session.scalars(
        select(JobFile).where(
            JobFile.tenant_id == tenant_id,
            JobFile.state == FileState.FAILED,
            JobFile.staged_path.is_not(None),
            *conditions,
        )
    ).all()
    for job_file in rows:
        if job_file.staged_path:
            Path(job_file.staged_path).unlink(missing_ok=True)
        job_file.staged_path = None
    return len(rows)
