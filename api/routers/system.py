"""What a tenant admin needs to see the service is well: each dependency's health, the active
index and model, a running reindex and the ingest queue (scope `admin`)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.checks import service_checks
from api.deps import AdminCaller, RuntimeDep, SessionDep, SettingsDep
from api.routers.health import readiness_checks
from api.schemas import AUTH_ERRORS, CheckOut, IndexOut, QueueOut, SystemOut, error_responses
from core.indexes import all_indexes
from core.models import FileState, IndexState, JobFile, VectorIndex
from core.tenancy import as_utc

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get(
    "/system",
    response_model=SystemOut,
    responses=error_responses(*AUTH_ERRORS),
    summary="Dependencies' health, the active index, a running reindex, the ingest queue",
)
def read_system(
    caller: AdminCaller, session: SessionDep, runtime: RuntimeDep, settings: SettingsDep
) -> SystemOut:
    """Each dependency checked now: the database and the vector store as `/readyz` does, the
    broker and the reader with a few seconds' timeout each (so the answer may take that long
    when one is down). Details (addresses, versions, errors) go to the operator tenant's admins
    only. Indexes from the registry `ragkb reindex` keeps; queue counts from the job files."""
    operator = caller.tenant_name == settings.operator_tenant
    ready = readiness_checks(runtime)
    others = service_checks(settings)
    checks = [
        CheckOut(name=name, ok=value == "ok", detail=value if operator else None)
        for name, value in ready.items()
    ]
    checks += [
        CheckOut(name=name.replace(" ", "_"), ok=ok, detail=detail if operator else None)
        for name, ok, detail in others
    ]
    indexes = [_index_out(row) for row in all_indexes(session)]
    return SystemOut(
        status="ready" if all(c.ok for c in checks) else "degraded",
        checks=checks,
        active_index=next((i for i in indexes if i.state == IndexState.ACTIVE), None),
        reindex=next((i for i in indexes if i.state == IndexState.BUILDING), None),
        indexes=indexes,
        queue=_queue(session, caller.tenant_id),
        queue_all_tenants=_queue(session, None) if operator else None,
        operator=operator,
    )


def _index_out(row: VectorIndex) -> IndexOut:
    return IndexOut(
        collection=row.collection,
        model_name=row.model_name,
        dimension=row.dimension,
        state=str(row.state),
        created_at=as_utc(row.created_at),
        activated_at=as_utc(row.activated_at) if row.activated_at else None,
        points_copied=row.points_copied,
        runner=row.runner,
        error=row.error,
    )


def _queue(session: Session, tenant_id: str | None) -> QueueOut:
    query = select(JobFile.state, func.count()).where(
        JobFile.state.in_([FileState.QUEUED, FileState.RUNNING])
    )
    if tenant_id is not None:
        query = query.where(JobFile.tenant_id == tenant_id)
    counts = dict(session.execute(query.group_by(JobFile.state)).tuples().all())
    return QueueOut(
        files_queued=counts.get(FileState.QUEUED, 0), files_running=counts.get(FileState.RUNNING, 0)
    )
