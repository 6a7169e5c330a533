"""Helpers for tests that talk to the HTTP API (in-process or a real server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi.testclient import TestClient

from api.app import create_app
from api.echo_reader import ECHO_CITATIONS, EchoReader
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import create_tenant, issue_api_key


class _Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...


def wait_for_job(client: _Client, job_id: str, key: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/ingest/jobs/{job_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"].startswith("completed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def files_by_path(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in job["files"]}


@dataclass
class Harness:
    """An app in-process with two tenants: acme (key_a, tenant_a) and globex (key_b)."""

    client: TestClient
    runtime: Runtime
    key_a: str
    key_b: str
    tenant_a: str


@contextmanager
def migrated_runtime(settings: Settings, embedder: LocalEmbedder) -> Iterator[Runtime]:
    """The runtime built from `settings` (migrated first), closed on the way out."""
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    try:
        yield runtime
    finally:
        runtime.close()


@contextmanager
def echo_runtime(settings: Settings, embedder: LocalEmbedder) -> Iterator[Runtime]:
    """`migrated_runtime` answered by the echo reader (api/echo_reader.py), which repeats its
    whole prompt: every response and stored turn then shows what reached the reader."""
    with EchoReader() as echo:
        settings.reader.base_url = echo.base_url
        settings.citations = ECHO_CITATIONS.model_copy()
        with migrated_runtime(settings, embedder) as runtime:
            yield runtime


@contextmanager
def two_tenants(settings: Settings, embedder: LocalEmbedder) -> Iterator[Harness]:
    """The app built from `settings` (migrated first), its runtime closed on the way out."""
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant_a = create_tenant(session, name="acme")
        key_a = issue_api_key(session, tenant=tenant_a).plaintext
        key_b = issue_api_key(session, tenant=create_tenant(session, name="globex")).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield Harness(client, runtime, key_a, key_b, tenant_a.id)
    finally:
        runtime.close()
