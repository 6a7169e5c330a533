"""Ingest jobs: upload files (a folder with relative paths) and follow their progress."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError
from sqlalchemy.orm import Session

from api.deps import IngestCaller, ReadCaller, RuntimeDep, SessionDep, UploadCaller
from api.runtime import Runtime
from api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    BUSY_ERRORS,
    DocumentAccessIn,
    FileOut,
    IdPath,
    JobList,
    JobOut,
    ProgressOut,
    error_responses,
    invalid_request,
    parse_json_body,
)
from api.uploads import (
    ReceivedUpload,
    UploadLimits,
    UploadRefusedError,
    content_length_allowance,
    receive_upload,
    sweep_abandoned_uploads,
)
from core.audit import AuditAction, Outcome, record_by
from core.models import FileState, IngestJob, JobFile
from core.quotas import (
    QuotaExceededError,
    TenantLimits,
    check_quota,
    effective_limits,
    existing_paths,
    tenant_usage,
)
from core.tenancy import Scope, TenantContext
from ingest.folders import FolderRefusedError, resolve_folder, walk_folder
from ingest.jobs import (
    InvalidJobCursorError,
    NothingToRetryError,
    add_job_file,
    create_job,
    get_job,
    job_progress,
    list_jobs,
    number_versions,
    purge_expired_failed,
    requeue_failed,
)
from ingest.originals import originals_for
from ingest.paths import UnsafePathError, normalize_relative_path, repeated_paths
from ingest.staging import FileTooLargeError, stage_stream
from ingest.versions import prune_tombstones
from workers.celery_app import enqueue_ingest

router = APIRouter(prefix="/v1/ingest", tags=["ingest"])


class FolderJobIn(DocumentAccessIn):
    path: str = Field(description="A folder on the server, under one of the allowed roots.")


_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "principals": {
                            "type": "string",
                            "description": "JSON list of who may read the files, e.g. "
                            '`["group:finance"]`. Omitted: everyone in the tenant.',
                        },
                        "metadata": {
                            "type": "string",
                            "description": "JSON object of custom fields (string values), "
                            "filterable in search.",
                        },
                        "ocr": {
                            "type": "string",
                            "enum": ["auto", "force"],
                            "description": "`force`: read every PDF page with OCR (a scan whose "
                            "text layer is wrong). Default `auto`: only pages that are scans.",
                        },
                    },
                    "required": ["files"],
                }
            },
            "application/json": {"schema": FolderJobIn.model_json_schema()},
        },
    }
}


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS, 415, *BUSY_ERRORS),
    summary="Upload files for indexing, or index a folder on the server",
    openapi_extra=_REQUEST_BODY,
)
async def create_ingest_job(
    request: Request,
    tenant: UploadCaller,
    session: SessionDep,
    runtime: RuntimeDep,
) -> JobOut:
    """Start a job with one task per batch of files and return at once; poll it for progress
    (scope `ingest`; one token of the tenant's ingest rate limit per request). An upload that
    would take the tenant over its document or storage quota is refused (413) before anything
    is stored.

    multipart/form-data `files`: each file name is its path relative to the folder
    (`filename*=UTF-8''…` preferred over `filename`; normalised to NFC; a Windows drive is
    dropped, its folders kept). A file whose name is unsafe (absolute, or with `..`) is recorded
    as failed with its reason; the others go on. A file over the size limit refuses the whole
    upload (413) before anything is stored. Two files with the same path after normalisation
    (`a/x.md` twice, or `C:\\a\\x.md` and `a/x.md`) refuse the upload (422, naming the path), and
    so does a form field given twice (two `principals` lists: which applies is unknowable).

    Versions of a path apply in the order their uploads were accepted, whichever worker
    finishes first: a file whose path got a newer version (or a delete) accepted after it ends
    `skipped` as superseded.

    application/json `{"path": "/srv/share/handbook"}`: a folder on the server, allowed only
    under `RAGKB_INGEST__ALLOWED_ROOTS` (403 otherwise; the feature is off by default).
    """
    settings = runtime.settings
    limits = effective_limits(tenant.limits, settings.limits)
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json":
        body = parse_json_body(await request.body(), FolderJobIn)
        return await run_in_threadpool(
            _folder_job, body.path, body, tenant, limits, session, runtime
        )
    if not media_type:
        raise invalid_request(("body", "files"), "no files in the upload")
    if media_type != "multipart/form-data":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the files as multipart/form-data, or a server folder as application/json",
        )
    usage = await run_in_threadpool(tenant_usage, session, tenant_id=tenant.tenant_id)
    upload_limits = UploadLimits(
        max_file_bytes=settings.ingest.max_file_bytes,
        max_files=settings.ingest.max_files_per_job,
        max_total_bytes=max(0, limits.max_stored_bytes - usage.stored_bytes),
        max_field_bytes=settings.http.max_body_bytes,
    )
    declared = request.headers.get("content-length", "")
    allowance = content_length_allowance(settings.http.max_body_bytes, upload_limits.max_files)
    most = min(
        upload_limits.max_file_bytes * upload_limits.max_files, upload_limits.max_total_bytes
    )
    if declared.isdigit() and int(declared) > most + allowance:
        # Refused on its declared size: not a byte of the body is read.
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"upload of {declared} bytes is larger than this job may be ({most} bytes of files: "
            "the per-file limit times the files per job, or what the tenant's storage quota "
            "has left)",
        )
    incoming = settings.uploads_dir / tenant.tenant_id / f".incoming-{uuid.uuid4().hex}"
    try:
        received = await receive_upload(request.stream(), content_type, incoming, upload_limits)
        if not received.files:
            raise invalid_request(("body", "files"), "no files in the upload")
        fields = received.fields
        access = _access_from_form(
            fields.get("principals"), fields.get("metadata"), fields.get("ocr")
        )
        return await run_in_threadpool(
            _upload_job, received, incoming, access, tenant, limits, session, runtime
        )
    except UploadRefusedError as exc:
        if exc.quota:
            await run_in_threadpool(_record_quota_refusal, session, tenant, 0)
        raise HTTPException(exc.status_code, str(exc)) from exc
    finally:
        # Moved into the job's folder when the job was made; whatever is left was refused.
        await run_in_threadpool(shutil.rmtree, incoming, True)


def _access_from_form(
    principals: str | None, metadata: str | None, ocr: str | None
) -> DocumentAccessIn:
    """The form's `principals` and `metadata` fields, each a JSON document, and `ocr`."""
    raw: dict[str, Any] = {} if ocr is None else {"ocr": ocr}
    for name, value in (("principals", principals), ("metadata", metadata)):
        if value is None:
            continue
        try:
            raw[name] = json.loads(value)
        except ValueError as exc:
            raise invalid_request(("body", name), f"{name} is not valid JSON: {exc}") from exc
    try:
        return DocumentAccessIn.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc


def _upload_job(
    received: ReceivedUpload,
    incoming: Path,
    access: DocumentAccessIn,
    tenant: TenantContext,
    limits: TenantLimits,
    session: Session,
    runtime: Runtime,
) -> JobOut:
    paths: list[str] = []
    for upload in received.files:
        try:
            paths.append(normalize_relative_path(upload.raw_name))
        except UnsafePathError:
            continue  # recorded as failed, stores nothing
    _refuse_repeated(paths)
    _check_quota(session, tenant, limits, paths, received.total_bytes)
    job, job_dir = _new_job(session, tenant, access, runtime)
    # The files were staged as they streamed in: the job's folder is the staging folder renamed.
    job_dir.parent.mkdir(parents=True, exist_ok=True)
    incoming.rename(job_dir)
    queued: list[JobFile] = []
    for position, upload in enumerate(received.files):
        staged_path = job_dir / upload.staged.staged_path.name
        try:
            path = normalize_relative_path(upload.raw_name)
        except UnsafePathError as exc:
            staged_path.unlink(missing_ok=True)
            add_job_file(
                session, job=job, position=position, path=upload.raw_name[:1024] or "(unnamed)",
                rejected_reason=str(exc),
            )  # fmt: skip
            continue
        job_file = add_job_file(
            session,
            job=job,
            position=position,
            path=path,
            staged_path=str(staged_path),
            size_bytes=upload.staged.size_bytes,
            sha256=upload.staged.sha256,
        )
        queued.append(job_file)
    try:
        return _commit_and_enqueue(job, queued, tenant, session, runtime)
    except BaseException:
        session.rollback()
        shutil.rmtree(job_dir, ignore_errors=True)
        raise


def _folder_job(
    raw_path: str,
    access: DocumentAccessIn,
    tenant: TenantContext,
    limits: TenantLimits,
    session: Session,
    runtime: Runtime,
) -> JobOut:
    settings = runtime.settings
    try:
        folder, root = resolve_folder(raw_path, settings.ingest.allowed_roots)
    except FolderRefusedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    job, job_dir = _new_job(session, tenant, access, runtime)
    queued: list[JobFile] = []
    for position, entry in enumerate(walk_folder(folder, root)):
        if position >= settings.ingest.max_files_per_job:
            session.rollback()
            shutil.rmtree(job_dir, ignore_errors=True)
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"too many files: more than {settings.ingest.max_files_per_job} per job",
            )
        reason = entry.refused_reason
        staged = None
        if entry.source is not None:
            # Staged (copied and hashed) like an upload: the worker never reads the share, and
            # a file changed while queued cannot make the stored version lie.
            try:
                with entry.source.open("rb") as source:
                    staged = stage_stream(
                        source, job_dir / f"{position:06d}",
                        max_bytes=settings.ingest.max_file_bytes,
                    )  # fmt: skip
            except FileTooLargeError as exc:
                reason = str(exc)
            except OSError as exc:
                reason = f"cannot read the file: {exc.strerror}"
        if staged is None:
            add_job_file(session, job=job, position=position, path=entry.relative_path,
                         rejected_reason=reason or "cannot read the file")  # fmt: skip
            continue
        job_file = add_job_file(
            session, job=job, position=position, path=entry.relative_path,
            staged_path=str(staged.staged_path), size_bytes=staged.size_bytes, sha256=staged.sha256,
        )  # fmt: skip
        queued.append(job_file)
    staged_files = [f for f in job.files if f.staged_path]
    try:
        # A folder lists each path once; the batch code relies on it all the same.
        _refuse_repeated([f.path for f in job.files])
        _check_quota(
            session, tenant, limits, [f.path for f in staged_files],
            sum(f.size_bytes for f in staged_files),
        )  # fmt: skip
    except HTTPException:
        session.rollback()
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return _commit_and_enqueue(job, queued, tenant, session, runtime)


def _new_job(
    session: Session, tenant: TenantContext, access: DocumentAccessIn, runtime: Runtime
) -> tuple[IngestJob, Path]:
    """The job row (with the upload's access list) and the folder its files are staged in; the
    tenant's failed files kept past `ingest.keep_failed_files_h`, originals past
    `ingest.keep_originals_days`, and its tombstones no accepted upload can outlive any more are
    purged on the way, and so are the staging folders of uploads a killed process abandoned."""
    kept_for = timedelta(hours=runtime.settings.ingest.keep_failed_files_h)
    purge_expired_failed(session, tenant_id=tenant.tenant_id, kept_for=kept_for)
    originals_for(runtime.settings).purge_expired(tenant_id=tenant.tenant_id)
    prune_tombstones(session, tenant_id=tenant.tenant_id)
    sweep_abandoned_uploads(runtime.settings.uploads_dir / tenant.tenant_id)
    job = create_job(
        session,
        tenant_id=tenant.tenant_id,
        principals=access.principals,
        document_metadata=access.metadata,
        ocr_mode=access.ocr,
    )
    return job, runtime.settings.uploads_dir / tenant.tenant_id / job.id


def _check_quota(
    session: Session, tenant: TenantContext, limits: TenantLimits, paths: list[str], new_bytes: int
) -> None:
    """Refuse (413) a job that would not fit the tenant's quotas, before it is queued.

    A new version of an existing path is not a new document, but its bytes are counted in full
    (the old version's are freed only once the new one is indexed).
    """
    new_paths = set(paths) - existing_paths(session, tenant_id=tenant.tenant_id, paths=paths)
    try:
        check_quota(
            tenant_usage(session, tenant_id=tenant.tenant_id), limits,
            new_documents=len(new_paths), new_bytes=new_bytes,
        )  # fmt: skip
    except QuotaExceededError as exc:
        _record_quota_refusal(session, tenant, len(paths))
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc


def _refuse_repeated(paths: list[str]) -> None:
    """422 for a job naming a path twice: which of its two versions is the newer is unknowable."""
    if repeated := repeated_paths(paths):
        raise invalid_request(
            ("body", "files"),
            "a path may appear once per job; named more than once: " + ", ".join(repeated[:20]),
        )


def _record_quota_refusal(session: Session, tenant: TenantContext, files: int) -> None:
    session.rollback()
    record_by(
        session, tenant, AuditAction.INGEST, Outcome.DENIED,
        details={"files": files, "reason": "quota"},
    )  # fmt: skip
    session.commit()


def _commit_and_enqueue(
    job: IngestJob, queued: list[JobFile], tenant: TenantContext, session: Session, runtime: Runtime
) -> JobOut:
    number_versions(session, queued)
    queued_ids = [job_file.id for job_file in queued]
    record_by(
        session, tenant, AuditAction.INGEST, target=job.id,
        details={"files": len(job.files), "queued": len(queued_ids),
                 "bytes": sum(f.size_bytes or 0 for f in job.files)},
    )  # fmt: skip
    session.commit()
    enqueue_ingest(runtime.celery_app, queued_ids, tenant_id=tenant.tenant_id)
    session.refresh(job)
    return _job_out(job)


@router.get(
    "/jobs",
    response_model=JobList,
    responses=error_responses(*AUTH_ERRORS, 422),
    summary="The tenant's ingest jobs, newest first (scope `read`)",
)
def list_ingest_jobs(
    tenant: ReadCaller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the page before; omitted: newest."),
    ] = None,
) -> JobList:
    """Each job's status and progress (files and chunks done/total, rate, ETA), without its
    files: `GET /v1/ingest/jobs/{id}` gives each file's state and reason. 422 for a cursor this
    API did not hand out."""
    try:
        page = list_jobs(session, tenant_id=tenant.tenant_id, limit=limit, cursor=cursor)
    except InvalidJobCursorError as exc:
        raise invalid_request(("query", "cursor"), str(exc)) from exc
    return JobList(
        jobs=[_job_out(job, include_files=False) for job in page.jobs],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/jobs/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=error_responses(*AUTH_ERRORS, 404, 409),
    summary="Queue a job's failed files again from their kept bytes (scope `ingest`)",
)
def retry_ingest_job(
    job_id: IdPath, tenant: IngestCaller, session: SessionDep, runtime: RuntimeDep
) -> JobOut:
    """The job's failed files go back to `queued` and are indexed again from the bytes uploaded
    with the job (kept `RAGKB_INGEST__KEEP_FAILED_FILES_H` hours after a file failed, default
    24), with the job's access list and metadata; no new upload. Files already indexed are left
    alone. 404 for another tenant's job; 409 with the reason when no failed file's bytes are
    kept (refused at upload, expired, or the job has no failed files)."""
    job = get_job(session, tenant_id=tenant.tenant_id, job_id=job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    kept_for = timedelta(hours=runtime.settings.ingest.keep_failed_files_h)
    try:
        requeued = requeue_failed(session, job, kept_for=kept_for)
    except NothingToRetryError as exc:
        session.commit()  # expired bytes deleted
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    record_by(
        session, tenant, AuditAction.INGEST, target=job.id,
        details={"retry": True, "queued": len(requeued)},
    )  # fmt: skip
    session.commit()
    enqueue_ingest(runtime.celery_app, [f.id for f in requeued], tenant_id=tenant.tenant_id)
    session.refresh(job)
    return _job_out(job)


JOB_FILES_NEED_INGEST = (
    "this API key requires end users' principals, and a job's files name the paths of "
    "documents its end users may not read: ask with include_files=false, or with a key that "
    "has the ingest scope"
)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses=error_responses(*AUTH_ERRORS, 400, 404, 422),
    summary="A job's state, per file, and its progress (scope `read`)",
)
def read_ingest_job(
    job_id: IdPath, tenant: ReadCaller, session: SessionDep, include_files: bool = True
) -> JobOut:
    """`include_files=false` returns the progress alone (polling a 10,000-file job). A key
    that requires end users' principals gets each file (its path) only when it may also
    ingest (scope `ingest`: the uploading app): otherwise 400, since a job names the paths of
    restricted documents no end user may read."""
    if include_files and tenant.require_principals and Scope.INGEST not in tenant.scopes:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, JOB_FILES_NEED_INGEST)
    job = get_job(session, tenant_id=tenant.tenant_id, job_id=job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return _job_out(job, include_files=include_files)


def _job_out(job: IngestJob, *, include_files: bool = True) -> JobOut:
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
            for f in (job.files if include_files else [])
        ],
    )
