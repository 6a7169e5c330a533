"""`GET /v1/admin/system`: dependencies' health, indexes and queue depth, in-process on the
embedded default (real store, database and worker; the reader points at a closed port)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import ALL_SCOPES, Scope, create_tenant, issue_api_key, list_tenants
from ingest.jobs import add_job_file, create_job
from tests.apihelpers import auth


@dataclass
class Keys:
    operator: str
    tenant_admin: str
    reader: str


@pytest.fixture
def api(settings: Settings, embedder: LocalEmbedder) -> Iterator[tuple[TestClient, Keys]]:
    settings.operator_tenant = "ops"
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        ops, acme = create_tenant(session, name="ops"), create_tenant(session, name="acme")
        keys = Keys(
            operator=issue_api_key(session, tenant=ops, scopes=ALL_SCOPES).plaintext,
            tenant_admin=issue_api_key(session, tenant=acme, scopes=ALL_SCOPES).plaintext,
            reader=issue_api_key(session, tenant=acme, scopes={Scope.READ}).plaintext,
        )
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield client, keys
    finally:
        runtime.close()


def test_system_shows_health_index_and_queue_with_details_for_the_operator(
    api: tuple[TestClient, Keys], settings: Settings
) -> None:
    client, keys = api
    assert client.get("/v1/admin/system", headers=auth(keys.reader)).status_code == 403
    operator = client.get("/v1/admin/system", headers=auth(keys.operator))
    assert operator.status_code == 200, operator.text
    body = operator.json()
    checks = {c["name"]: c for c in body["checks"]}
    assert set(checks) == {"database", "vector_store", "broker", "reader"}
    assert [checks[n]["ok"] for n in ("database", "vector_store", "broker")] == [True] * 3
    # The reader of these tests is a closed port: reported, with why, and the status says so.
    assert checks["reader"]["ok"] is False
    assert checks["reader"]["detail"]
    assert body["status"] == "degraded"
    active = body["active_index"]
    assert active["state"] == "active"
    assert active["model_name"] == settings.embedding.model
    assert active["dimension"] > 0
    assert body["reindex"] is None
    assert body["queue"] == {"files_queued": 0, "files_running": 0}
    assert body["queue_all_tenants"] == {"files_queued": 0, "files_running": 0}
    assert body["operator"] is True
    # A file queued for the tenant (straight in SQL: no worker takes it) shows in its queue.
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.session_factory() as session:
        acme = next(t for t in list_tenants(session) if t.name == "acme")
        job = create_job(session, tenant_id=acme.id)
        add_job_file(session, job=job, position=0, path="q.md", staged_path="/nonexistent")
        session.commit()
    tenant = client.get("/v1/admin/system", headers=auth(keys.tenant_admin)).json()
    assert tenant["queue"] == {"files_queued": 1, "files_running": 0}
    operator_view = client.get("/v1/admin/system", headers=auth(keys.operator)).json()
    assert operator_view["queue"] == {"files_queued": 0, "files_running": 0}  # ops' own
    assert operator_view["queue_all_tenants"] == {"files_queued": 1, "files_running": 0}
    assert tenant["operator"] is False
    assert tenant["queue_all_tenants"] is None
    assert all(c["detail"] is None for c in tenant["checks"])
    assert [c["ok"] for c in tenant["checks"]] == [c["ok"] for c in body["checks"]]
