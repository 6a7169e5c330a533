"""Ingest jobs: upload files (a folder with relative paths) and follow their progress."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile, status

from api.deps import RuntimeDep, SessionDep, TenantDep
from api.schemas import ErrorOut, FileOut, JobOut, ProgressOut
from core.models import FileState, IngestJob
from ingest.jobs import add_job_file, create_job, get_job, job_progress
from ingest.paths import UnsafePathError, normalize_relative_path
from ingest.staging import FileTooLargeError, stage_stream
from workers.celery_app import enqueue_ingest

router = APIRouter(prefix="/v1/ingest", tags=["ingest"])


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={401: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="Upload files for indexing",
)
def create_ingest_job(
    files: Annotated[
        list[UploadFile],
        File(description="One or many files; each file name is its path relative to the folder."),
    ],
    tenant: TenantDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> JobOut:
    """Start a job with one task per file and return at once; poll the job for progress.

    A file whose name is unsafe (absolute, or with `..`) is recorded as failed with its reason;
    the others go on. A file over the size limit refuses the whole upload (413) before anything
    is stored.
    """
    settings = runtime.settings
    if len(files) > settings.ingest.max_files_per_job:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"too many files: {len(files)} > {settings.ingest.max_files_per_job} per job",
        )
    job = create_job(session, tenant_id=tenant.tenant_id)
    job_dir = settings.uploads_dir / tenant.tenant_id / job.id
    queued_ids: list[str] = []
    try:
        for position, upload in enumerate(files):
            raw_name = upload.filename or ""
            try:
                path = normalize_relative_path(raw_name)
            except UnsafePathError as exc:
                add_job_file(
                    session, job=job, position=position, path=raw_name[:1024] or "(unnamed)",
                    rejected_reason=str(exc),
                )  # fmt: skip
                continue
            staged = stage_stream(
                upload.file, job_dir / f"{position:06d}", max_bytes=settings.ingest.max_file_bytes
            )
            job_file = add_job_file(
                session,
                job=job,
                position=position,
                path=path,
                staged_path=str(staged.staged_path),
                size_bytes=staged.size_bytes,
                sha256=staged.sha256,
            )
            session.flush()
            queued_ids.append(job_file.id)
    except FileTooLargeError as exc:
        session.rollback()
        shutil.rmtree(job_dir, ignore_errors=True)
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{upload.filename}: {exc}") from exc
    session.commit()
    enqueue_ingest(runtime.celery_app, queued_ids, tenant_id=tenant.tenant_id)
    session.refresh(job)
    return _job_out(job)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    summary="A job's state, per file, and its progress",
)
def read_ingest_job(job_id: str, tenant: TenantDep, session: SessionDep) -> JobOut:
    job = get_job(session, tenant_id=tenant.tenant_id, job_id=job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return _job_out(job)


def _job_out(job: IngestJob) -> JobOut:
    progress = job_progress(job)
    return JobOut(
        id=job.id,
        status=progress.status,
        created_at=job.created_at,
        progress=ProgressOut(
            total=progress.total,
            queued=progress.queued,
            running=progress.running,
            done=progress.done,
            failed=progress.failed,
            skipped=progress.skipped,
            fraction=round(progress.fraction, 4),
            chunks_indexed=progress.chunks_indexed,
            files_per_s=round(progress.files_per_s, 3) if progress.files_per_s else None,
            eta_s=round(progress.eta_s, 1) if progress.eta_s is not None else None,
        ),
        files=[
            FileOut(
                id=f.id,
                path=f.path,
                state=FileState(f.state).value,
                error=f.error,
                document_id=f.document_id,
                chunk_count=f.chunk_count,
                size_bytes=f.size_bytes,
            )
            for f in job.files
        ],
    )
