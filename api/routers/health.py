"""Liveness and readiness, outside /v1 and without a key (for probes)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from api.deps import RuntimeDep
from api.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and the vector store answer",
    responses={
        503: {
            "description": "Not ready: the same body, naming what failed",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            },
        }
    },
)
def readyz(runtime: RuntimeDep, response: Response) -> dict[str, str]:
    checks = readiness_checks(runtime)
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if ready else "not ready", **checks}


def readiness_checks(runtime: Runtime) -> dict[str, str]:
    """`ok`, or `error: <exception type>`, for the database and the vector store."""
    checks: dict[str, str] = {}
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        runtime.store.count(tenant_id="__readiness__")
        checks["vector_store"] = "ok"
    except Exception as exc:
        checks["vector_store"] = f"error: {type(exc).__name__}"
    return checks
