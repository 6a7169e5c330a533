"""OpenTelemetry traces: one tree per `/v1/query` and one per upload with the ingest task it
started (context carried through the broker), captured with the SDK's in-memory exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import ReaderSettings, Settings, TelemetrySettings
from core.telemetry import TENANT_ATTRIBUTE, configure_tracing
from core.tenancy import create_tenant, issue_api_key
from tests.apihelpers import auth, wait_for_job

pytestmark = pytest.mark.reader
QUESTION = "How many days of paid vacation do employees receive?"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    provider = configure_tracing(TelemetrySettings(), exporter=memory)
    if memory not in [p.span_exporter for p in provider._active_span_processor._span_processors]:
        # Tracing was configured earlier in this process: listen on the same provider.
        provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def traced(
    settings: Settings, embedder: LocalEmbedder, reader_url: str, exporter: InMemorySpanExporter
) -> Iterator[tuple[TestClient, str, str]]:
    settings.reader = ReaderSettings(
        managed=False, base_url=reader_url, temperature=0, max_tokens=120
    )
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="acme")
        key = issue_api_key(session, tenant=tenant).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            exporter.clear()
            yield client, key, tenant.id
    finally:
        runtime.close()


def _tree(spans: list[ReadableSpan], root: ReadableSpan) -> dict[str, list[ReadableSpan]]:
    """Spans of root's trace by name, each checked to descend from the root."""
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == root.context.trace_id}
    for span in by_id.values():
        node: Any = span
        while node.parent is not None:
            assert node.parent.span_id in by_id, f"{span.name}: parent outside the trace"
            node = by_id[node.parent.span_id]
        assert node is root, f"{span.name} does not descend from {root.name}"
    names: dict[str, list[ReadableSpan]] = {}
    for span in by_id.values():
        names.setdefault(span.name, []).append(span)
    return names


def _server_span(spans: list[ReadableSpan], route: str) -> ReadableSpan:
    return next(s for s in spans if s.kind is SpanKind.SERVER and route in s.name)


def test_a_query_is_one_trace_with_a_span_per_stage(
    traced: tuple[TestClient, str, str], exporter: InMemorySpanExporter
) -> None:
    client, key, tenant_id = traced
    handbook = (
        b"# Handbook\n\n## Vacation\n\nEmployees receive 25 days of paid vacation per year.\n"
    )
    upload = client.post(
        "/v1/ingest/jobs", headers=auth(key), files=[("files", ("handbook.md", handbook))]
    )
    wait_for_job(client, upload.json()["id"], key)
    exporter.clear()
    answer = client.post("/v1/query", headers=auth(key), json={"question": QUESTION})
    assert answer.status_code == 200, answer.text
    spans = list(exporter.get_finished_spans())
    root = _server_span(spans, "/v1/query")
    assert root.parent is None
    tree = _tree(spans, root)
    assert {"retrieve", "embed", "search", "read", "verify"} <= set(tree)
    assert tree["retrieve"][0].attributes[TENANT_ATTRIBUTE] == tenant_id
    read = tree["read"][0].attributes
    assert read["gen_ai.operation.name"] == "chat"
    assert read["gen_ai.request.model"]
    assert int(read["gen_ai.usage.output_tokens"]) > 0
    assert int(read["gen_ai.usage.input_tokens"]) > 0
    # Content stays out of spans unless `telemetry.capture_content` is set.
    for span in tree.values():
        for value in (span[0].attributes or {}).values():
            assert "vacation" not in str(value).lower()


def test_an_upload_and_its_ingest_task_are_one_trace_across_the_broker(
    traced: tuple[TestClient, str, str], exporter: InMemorySpanExporter
) -> None:
    client, key, tenant_id = traced
    upload = client.post(
        "/v1/ingest/jobs",
        headers=auth(key),
        files=[("files", ("notes.md", b"# Notes\n\nThe lab opens at nine.\n"))],
    )
    wait_for_job(client, upload.json()["id"], key)
    deadline = time.monotonic() + 30
    while "upsert" not in {s.name for s in exporter.get_finished_spans()}:
        assert time.monotonic() < deadline, "the ingest task's spans never ended"
        time.sleep(0.1)
    spans = list(exporter.get_finished_spans())
    root = _server_span(spans, "/v1/ingest/jobs")
    tree = _tree(spans, root)
    assert {"parse", "chunk", "embed", "upsert"} <= set(tree)
    task = next(s for name, s in tree.items() if name.startswith("run/"))[0]
    assert task.attributes[TENANT_ATTRIBUTE] == tenant_id
    parse = tree["parse"][0]
    assert parse.parent is not None
    assert parse.parent.span_id == task.context.span_id
    assert tree["parse"][0].attributes["ragkb.file_type"] == "md"
