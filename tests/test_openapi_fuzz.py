"""Schemathesis over the OpenAPI schema, in-process: no 5xx, and every response is what the
schema declares (status, body, content type, headers); hostile raw bodies (not UTF-8, not JSON,
nested too deep) are refused with a documented 4xx on every route that takes a body.

Each generated request is sent twice: with a valid admin key of every scope (the operator's, so
the tenant routes are reached too) and with no key. The reader points at a closed port; the
tenant has no documents, so queries are answered without it (no evidence) and the streaming
and chat routes are included. Rate limits are raised so the fuzzer measures the routes, not
the buckets (429 is tested in test_admin.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient

from api.app import create_app
from api.eval_openapi import fuzz_schema
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import ALL_SCOPES, create_tenant, issue_api_key

KEY: dict[str, str] = {}


@pytest.fixture
def api_schema(settings: Settings, embedder: LocalEmbedder) -> Iterator[Any]:
    settings.operator_tenant = "ops"
    settings.limits.queries_per_minute = 1_000_000
    settings.limits.query_burst = 1_000_000
    settings.limits.ingest_per_minute = 1_000_000
    settings.limits.ingest_burst = 1_000_000
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="ops")
        KEY["admin"] = issue_api_key(session, tenant=tenant, scopes=ALL_SCOPES).plaintext
        session.commit()
    app = create_app(settings, runtime)
    # Schemathesis calls the ASGI app without running its lifespan.
    app.state.runtime = runtime
    runtime.start()
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app), TestClient(app)
    finally:
        runtime.close()


# Each operation is driven by hypothesis directly (schemathesis' lazy `from_fixture` does not
# work with this pytest), with few examples so the run stays around two minutes; the longer run
# is bench/schemathesis_run.py.
def test_every_response_is_what_the_schema_declares(api_schema: Any) -> None:
    schema, client = api_schema
    report = fuzz_schema(
        schema, client=client, headers={"Authorization": f"Bearer {KEY['admin']}"}, max_examples=6
    )
    assert report.server_errors == 0, report.violations
    assert report.violations == []
    # The run reached the routes with the key, not only the 401s.
    assert len(report.by_operation) >= 15
    assert {200, 401} <= set(report.statuses), sorted(report.statuses)
