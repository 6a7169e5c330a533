"""Scopes, the admin API, rate limits, quotas, the audit log and HTTP hardening, in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.keycache import KeyCache
from core.models import ApiKey, utcnow
from core.settings import HttpSettings, Settings
from core.tenancy import (
    ALL_SCOPES,
    Scope,
    create_tenant,
    get_tenant,
    issue_api_key,
    revoke_api_key,
)
from tests.apihelpers import auth


@dataclass
class Admin:
    client: TestClient
    runtime: Runtime
    admin_key: str  # every scope, tenant acme
    read_key: str  # read only, tenant acme
    query_key: str  # query only, tenant acme
    other_key: str  # default scopes, tenant globex
    ops_key: str  # admin of the operator tenant
    acme_id: str
    globex_id: str


@pytest.fixture
def admin(settings: Settings, embedder: LocalEmbedder) -> Iterator[Admin]:
    settings.operator_tenant = "ops"
    settings.limits.query_burst = 3
    settings.limits.queries_per_minute = 6
    settings.limits.max_documents = 2
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        acme = create_tenant(session, name="acme")
        globex = create_tenant(session, name="globex")
        keys = [
            issue_api_key(session, tenant=acme, scopes=ALL_SCOPES).plaintext,
            issue_api_key(session, tenant=acme, scopes={Scope.READ}).plaintext,
            issue_api_key(session, tenant=acme, scopes={Scope.QUERY}).plaintext,
            issue_api_key(session, tenant=globex).plaintext,
            issue_api_key(
                session, tenant=create_tenant(session, name="ops"), scopes={Scope.ADMIN}
            ).plaintext,
        ]
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield Admin(client, runtime, *keys, acme.id, globex.id)
    finally:
        runtime.close()


def test_a_wrong_scope_is_403_with_the_reason_and_is_audited(admin: Admin) -> None:
    c = admin.client
    refused = c.post(
        "/v1/ingest/jobs", headers=auth(admin.read_key), files=[("files", ("a.md", b"x"))]
    )
    assert refused.status_code == 403
    assert "lacks the 'ingest' scope" in refused.json()["detail"]
    assert (
        c.post("/v1/query", headers=auth(admin.read_key), json={"question": "hi"}).status_code
        == 403
    )
    assert c.get("/v1/documents", headers=auth(admin.query_key)).status_code == 403
    assert c.get("/v1/admin/keys", headers=auth(admin.other_key)).status_code == 403
    assert c.get("/v1/documents", headers=auth(admin.read_key)).status_code == 200
    events = c.get("/v1/admin/audit?action=scope.denied", headers=auth(admin.admin_key)).json()
    assert {e["details"]["needed"] for e in events["events"]} == {"ingest", "query", "read"}


def test_admin_creates_lists_and_revokes_its_own_keys(admin: Admin) -> None:
    c = admin.client
    created = c.post(
        "/v1/admin/keys", headers=auth(admin.admin_key), json={"name": "ci", "scopes": ["read"]}
    )
    assert created.status_code == 201, created.text
    new_key = created.json()["key"]
    assert created.json()["scopes"] == ["read"]
    assert c.get("/v1/documents", headers=auth(new_key)).status_code == 200
    listed = c.get("/v1/admin/keys", headers=auth(admin.admin_key)).json()["keys"]
    assert created.json()["id"] in {k["id"] for k in listed}
    assert all("key" not in k for k in listed)
    # Another tenant's admin cannot see or revoke it.
    globex_admin = admin.client.post(
        "/v1/admin/keys", headers=auth(admin.other_key), json={"scopes": ["admin"]}
    )
    assert globex_admin.status_code == 403
    revoked = c.delete(f"/v1/admin/keys/{created.json()['id']}", headers=auth(admin.admin_key))
    assert revoked.status_code == 204
    assert c.get("/v1/documents", headers=auth(new_key)).status_code == 401
    bad = c.post("/v1/admin/keys", headers=auth(admin.admin_key), json={"scopes": ["root"]})
    assert bad.status_code == 422
    actions = [
        e["action"]
        for e in c.get("/v1/admin/audit", headers=auth(admin.admin_key)).json()["events"]
    ]
    assert "key.create" in actions
    assert "key.revoke" in actions


def test_an_expired_key_is_refused_the_moment_it_expires(admin: Admin) -> None:
    with admin.runtime.session_factory() as session:
        issued = issue_api_key(
            session, tenant=get_tenant(session, tenant_id=admin.acme_id),
            expires_at=utcnow() + timedelta(seconds=1),
        )  # fmt: skip
        session.commit()
    # Verified once, the key is held in memory: its expiry still applies on the dot.
    assert admin.client.get("/v1/documents", headers=auth(issued.plaintext)).status_code == 200
    assert issued.expires_at is not None
    time.sleep(max(0.0, (issued.expires_at - utcnow()).total_seconds()) + 0.05)
    assert admin.client.get("/v1/documents", headers=auth(issued.plaintext)).status_code == 401


def test_a_key_revoked_or_expired_elsewhere_is_refused_within_the_cache_ttl(admin: Admin) -> None:
    ttl_s = 0.5
    admin.runtime.key_cache = KeyCache(ttl_s=ttl_s, max_entries=100)
    with admin.runtime.session_factory() as session:
        acme = get_tenant(session, tenant_id=admin.acme_id)
        revoked, expired = issue_api_key(session, tenant=acme), issue_api_key(session, tenant=acme)
        session.commit()
    for key in (revoked, expired):
        assert admin.client.get("/v1/documents", headers=auth(key.plaintext)).status_code == 200
    # As the CLI or another replica would: straight in the database, not through this process.
    with admin.runtime.session_factory() as session:
        revoke_api_key(session, tenant_id=admin.acme_id, api_key_id=revoked.api_key_id)
        row = session.get(ApiKey, expired.api_key_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    time.sleep(ttl_s)
    for key in (revoked, expired):
        assert admin.client.get("/v1/documents", headers=auth(key.plaintext)).status_code == 401


def test_query_rate_limit_is_429_with_retry_after_per_tenant(admin: Admin) -> None:
    c = admin.client
    # The tenants have no documents, so no reader is needed: each query is retrieval only.
    codes = [
        c.post("/v1/query", headers=auth(admin.query_key), json={"question": "vacation?"})
        for _ in range(4)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert int(codes[-1].headers["retry-after"]) >= 1
    # Another tenant's bucket is its own.
    other = c.post("/v1/query", headers=auth(admin.other_key), json={"question": "vacation?"})
    assert other.status_code == 200
    metrics = c.get("/metrics").text
    assert 'ragkb_rate_limited_total{bucket="query"} 1.0' in metrics
    assert 'ragkb_http_errors_total{kind="rate_limited"} 1.0' in metrics


def test_document_quota_refuses_before_anything_is_stored(admin: Admin) -> None:
    c = admin.client
    files = [("files", (f"d{i}.md", b"# Doc\n\nSome text.\n")) for i in range(3)]
    refused = c.post("/v1/ingest/jobs", headers=auth(admin.other_key), files=files)
    assert refused.status_code == 413
    assert "document quota exceeded" in refused.json()["detail"]
    uploads = admin.runtime.settings.uploads_dir / admin.globex_id
    assert not uploads.exists() or not any(uploads.iterdir())
    accepted = c.post("/v1/ingest/jobs", headers=auth(admin.other_key), files=files[:2])
    assert accepted.status_code == 202
    # Queued files count too, so a second burst cannot slip past before the workers finish.
    again = c.post("/v1/ingest/jobs", headers=auth(admin.other_key), files=[files[2]])
    assert again.status_code == 413


def test_storage_quota_is_per_tenant_and_set_by_the_operator(admin: Admin) -> None:
    c = admin.client
    limits = {"max_stored_bytes": 10}
    path = f"/v1/admin/tenants/{admin.acme_id}/limits"
    assert c.put(path, headers=auth(admin.admin_key), json=limits).status_code == 403
    updated = c.put(path, headers=auth(admin.ops_key), json=limits)
    assert updated.status_code == 200, updated.text
    assert updated.json()["limits"]["max_stored_bytes"] == 10
    refused = c.post(
        "/v1/ingest/jobs", headers=auth(admin.admin_key), files=[("files", ("a.md", b"x" * 11))]
    )
    assert refused.status_code == 413
    assert "storage quota exceeded" in refused.json()["detail"]
    own = c.get("/v1/admin/tenant", headers=auth(admin.admin_key)).json()
    assert own["overrides"]["max_stored_bytes"] == 10
    events = c.get("/v1/admin/audit?action=tenant.limits", headers=auth(admin.admin_key)).json()
    assert events["events"][0]["details"]["max_stored_bytes"] == 10
    tenants = c.get("/v1/admin/tenants", headers=auth(admin.ops_key)).json()["tenants"]
    assert {t["name"] for t in tenants} == {"acme", "globex", "ops"}
    created = c.post("/v1/admin/tenants", headers=auth(admin.ops_key), json={"name": "initech"})
    assert created.status_code == 201
    dup = c.post("/v1/admin/tenants", headers=auth(admin.ops_key), json={"name": "initech"})
    assert dup.status_code == 409


def test_audit_log_keeps_lengths_not_text_and_pages(admin: Admin) -> None:
    c = admin.client
    secret_question = "What is the merger code name Bluebird?"
    for _ in range(3):
        c.post("/v1/query", headers=auth(admin.admin_key), json={"question": secret_question})
    first = c.get("/v1/admin/audit?action=query&limit=2", headers=auth(admin.admin_key)).json()
    assert len(first["events"]) == 2
    assert first["next_offset"] == 2
    rest = c.get("/v1/admin/audit?action=query&offset=2", headers=auth(admin.admin_key)).json()
    assert len(rest["events"]) == 1
    assert rest["next_offset"] is None
    event = first["events"][0]
    assert event["details"]["question_chars"] == len(secret_question)
    assert event["outcome"] == "ok"
    with admin.runtime.session_factory() as session:
        from core.models import AuditEvent

        stored = json.dumps([(e.details, e.target) for e in session.query(AuditEvent).all()])
    assert "Bluebird" not in stored
    assert "rkb_" not in stored
    future = c.get(
        "/v1/admin/audit", params={"since": "2100-01-01T00:00:00Z"}, headers=auth(admin.admin_key)
    )
    assert future.json()["events"] == []
    # Another tenant's log is its own.
    others = c.get("/v1/admin/audit", headers=auth(admin.ops_key)).json()["events"]
    assert all(e["action"] != "query" for e in others)


def test_searches_are_audited_and_read_back_at_once(admin: Admin) -> None:
    c = admin.client
    for _ in range(3):
        searched = c.post("/v1/search", headers=auth(admin.admin_key), json={"query": "Bluebird?"})
        assert searched.status_code == 200
    # Written off the request by a thread; an audit read waits for this process's own events.
    events = c.get("/v1/admin/audit?action=search", headers=auth(admin.admin_key)).json()
    assert len(events["events"]) == 3
    assert events["events"][0]["details"]["query_chars"] == len("Bluebird?")
    assert "Bluebird" not in json.dumps(events)


def test_security_headers_and_request_id(admin: Admin) -> None:
    c = admin.client
    response = c.get("/v1/documents", headers={**auth(admin.read_key), "X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    generated = c.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert len(generated.headers["x-request-id"]) == 32
    assert "cache-control" not in generated.headers
    assert (
        "access-control-allow-origin"
        not in c.get("/healthz", headers={"Origin": "https://evil.example"}).headers
    )


def test_request_id_is_in_every_log_line_of_the_request(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from core.logging import JsonFormatter, RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        admin.client.post(
            "/v1/query", headers={**auth(admin.admin_key), "X-Request-ID": "req-42"},
            json={"question": "anything"},
        )  # fmt: skip
    # Only the request's own lines: not the test client's, nor the worker threads' (celery).
    ours = {"api", "core", "generation", "retrieval"}
    server_side = [r for r in caplog.records if r.name.split(".")[0] in ours]
    lines = [json.loads(JsonFormatter().format(r)) for r in server_side]
    assert lines, "the request logged nothing"
    assert {line["request_id"] for line in lines} == {"req-42"}


def test_cors_is_on_only_for_the_listed_origins(
    settings: Settings, embedder: LocalEmbedder
) -> None:
    settings.http = HttpSettings(cors_allowed_origins=["https://app.example"])
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    try:
        with TestClient(create_app(settings, runtime)) as client:
            preflight = client.options(
                "/v1/documents",
                headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
            )
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"
            other = client.get("/healthz", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
    finally:
        runtime.close()
