"""Schemathesis over the OpenAPI schema, in-process: no 5xx, and every status is documented.

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
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from api.app import create_app
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
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        runtime.close()


# Each operation is driven by hypothesis directly (schemathesis' lazy `from_fixture` does not
# work with this pytest), with few examples so the run stays under two minutes.
def test_no_server_errors_and_only_documented_statuses(api_schema: Any) -> None:
    checks = [not_a_server_error, status_code_conformance]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    statuses: list[int] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case: Any) -> None:
            keyed = case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY['admin']}"}, checks=checks
            )
            anonymous = case.call_and_validate(checks=checks)
            statuses.extend((keyed.status_code, anonymous.status_code))

        exercise()
    # The run reached the routes with the key, not only the 401s.
    assert len(statuses) >= 2 * len(operations)
    assert {200, 401} <= set(statuses), sorted(set(statuses))
