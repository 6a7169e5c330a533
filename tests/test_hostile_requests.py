"""Hostile requests: refused before their body is read, bounded while it streams, shed when the
server is full, and a tenant's burst bounded by its own rate.

The bodies are async generators that count what the app pulled from them, sent through the ASGI
app exactly as a server streams them (httpx's ASGI transport hands the app one chunk per
`receive`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from core.admission import AdmissionGate, OverloadedError, Refusal
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.quotas import effective_limits
from core.settings import LimitSettings, Settings
from core.tenancy import ALL_SCOPES, LimitOverrides, create_tenant, issue_api_key
from tests.apihelpers import auth

MiB = 1024 * 1024


@dataclass
class Api:
    runtime: Runtime
    client: TestClient
    key: str
    tenant_id: str
    settings: Settings


@pytest.fixture
def api(settings: Settings, embedder: LocalEmbedder) -> Iterator[Api]:
    settings.operator_tenant = "ops"
    settings.ingest.max_file_bytes = 5 * MiB
    settings.http.admission_wait_s = 0.2
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="ops")
        key = issue_api_key(session, tenant=tenant, scopes=ALL_SCOPES).plaintext
        tenant_id = tenant.id
        session.commit()
    app = create_app(settings, runtime)
    with TestClient(app) as client:
        yield Api(runtime, client, key, tenant_id, settings)
    runtime.close()


class CountingBody:
    """`total` bytes in 1 MiB chunks, made only as the app asks for them."""

    def __init__(self, total: int, *, head: bytes = b"", tail: bytes = b"") -> None:
        self.total, self.head, self.tail = total, head, tail
        self.consumed = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in (self.head, *self._filler(), self.tail):
            if chunk:
                self.consumed += len(chunk)
                yield chunk

    def _filler(self) -> Iterator[bytes]:
        left = self.total
        while left > 0:
            size = min(MiB, left)
            left -= size
            yield b"a" * size


def _send(api: Api, method: str, path: str, body: CountingBody, headers: dict[str, str]) -> Any:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(go())


def test_a_body_without_a_key_is_refused_before_a_byte_is_read(api: Api) -> None:
    body = CountingBody(150 * MiB)
    response = _send(api, "POST", "/v1/query", body, {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert body.consumed == 0
    upload = CountingBody(2048 * MiB)
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    assert _send(api, "POST", "/v1/ingest/jobs", upload, headers).status_code == 401
    assert upload.consumed == 0


def test_a_json_body_past_the_limit_is_refused_on_its_length_or_while_it_streams(api: Api) -> None:
    limit = api.settings.http.max_body_bytes
    headers = {**auth(api.key), "Content-Type": "application/json"}
    declared = CountingBody(150 * MiB)
    response = _send(
        api, "POST", "/v1/query", declared, {**headers, "Content-Length": str(150 * MiB)}
    )
    assert response.status_code == 413
    assert declared.consumed == 0
    # No Content-Length (chunked): read up to the limit, then refused.
    streamed = CountingBody(150 * MiB, head=b'{"question": "')
    response = _send(api, "POST", "/v1/search", streamed, headers)
    assert response.status_code == 413, response.text
    assert "RAGKB_HTTP__MAX_BODY_BYTES" in response.json()["detail"]
    assert streamed.consumed <= limit + MiB


def test_an_upload_past_the_file_limit_stops_at_the_limit(api: Api) -> None:
    head = (
        b'--x\r\nContent-Disposition: form-data; name="files"; filename="big/huge.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
    )
    upload = CountingBody(2048 * MiB, head=head, tail=b"\r\n--x--\r\n")
    headers = {**auth(api.key), "Content-Type": "multipart/form-data; boundary=x"}
    response = _send(api, "POST", "/v1/ingest/jobs", upload, headers)
    assert response.status_code == 413, response.text
    assert "big/huge.txt" in response.json()["detail"]
    # The 5 MiB limit, plus the chunk that passed it: never the 2 GiB.
    assert upload.consumed <= 5 * MiB + 2 * MiB
    staged = list(api.settings.uploads_dir.rglob("*"))
    assert [p for p in staged if p.is_file()] == []


def test_an_upload_larger_than_the_job_may_be_is_refused_on_its_length(api: Api) -> None:
    api.settings.ingest.max_files_per_job = 3
    upload = CountingBody(2048 * MiB)
    headers = {
        **auth(api.key),
        "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": str(2048 * MiB),
    }
    response = _send(api, "POST", "/v1/ingest/jobs", upload, headers)
    assert response.status_code == 413
    assert upload.consumed == 0


def test_an_upload_past_the_tenants_storage_quota_stops_at_the_quota(api: Api) -> None:
    response = api.client.put(
        f"/v1/admin/tenants/{api.tenant_id}/limits",
        json={"max_stored_bytes": 2 * MiB},
        headers=auth(api.key),
    )
    assert response.status_code == 200, response.text
    head = b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n'
    upload = CountingBody(4 * MiB, head=head, tail=b"\r\n--x--\r\n")
    headers = {**auth(api.key), "Content-Type": "multipart/form-data; boundary=x"}
    response = _send(api, "POST", "/v1/ingest/jobs", upload, headers)
    assert response.status_code == 413
    assert "quota" in response.json()["detail"]
    assert upload.consumed <= 3 * MiB + len(head)


def test_an_upload_within_its_limits_is_staged_as_it_streams(api: Api) -> None:
    response = api.client.post(
        "/v1/ingest/jobs",
        files=[("files", ("docs/a.md", b"# A\n\nalpha")), ("files", ("docs/b.md", b"beta"))],
        data={"principals": '["group:x"]'},
        headers=auth(api.key),
    )
    assert response.status_code == 202, response.text
    files = {f["path"]: f for f in response.json()["files"]}
    assert files["docs/a.md"]["size_bytes"] == len(b"# A\n\nalpha")
    assert not list(api.settings.uploads_dir.rglob(".incoming-*"))


def test_staging_folders_a_killed_process_left_are_swept_at_the_next_job(api: Api) -> None:
    """A process killed mid-upload leaves its `.incoming-*` folder; the tenant's next job
    removes it once nothing wrote to it for `ABANDONED_AFTER`, and leaves a live one alone."""
    import os
    import time

    from api.uploads import ABANDONED_AFTER

    tenant_uploads = api.settings.uploads_dir / api.tenant_id
    abandoned = tenant_uploads / ".incoming-abandoned"
    live = tenant_uploads / ".incoming-live"
    for folder in (abandoned, live):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"half an upload")
    old = time.time() - ABANDONED_AFTER.total_seconds() - 60
    for path in (abandoned / "part", abandoned):
        os.utime(path, (old, old))
    response = api.client.post(
        "/v1/ingest/jobs", files=[("files", ("docs/c.md", b"gamma"))], headers=auth(api.key)
    )
    assert response.status_code == 202, response.text
    assert not abandoned.exists()
    assert (live / "part").read_bytes() == b"half an upload"


def test_a_json_body_that_is_not_utf8_is_a_400_with_the_reason_on_every_json_route(
    api: Api,
) -> None:
    body = b'{"path": "/srv/caf\xe9"}'
    for path in ("/v1/ingest/jobs", "/v1/query", "/v1/search", "/v1/admin/keys"):
        response = api.client.post(
            path, content=body, headers={**auth(api.key), "Content-Type": "application/json"}
        )
        assert response.status_code == 400, (path, response.text)
        assert "not UTF-8" in response.json()["detail"]


HOSTILE_JSON = {
    # Valid UTF-8 and valid JSON syntax, but a lone surrogate is no character: in a chat
    # message it broke the tokenizer, in a 422 the response's own encoding (500s).
    "lone surrogate": b'{"question": "\\ud800", "query": "\\udfff", "name": "\\ud800", '
    b'"path": "\\ud800", "messages": [{"role": "user", "content": "\\ud800"}], "\\ud801": 1}',
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "a 5,000-digit number": b'{"top_k": ' + b"9" * 5000 + b', "question": "x", "query": "x"}',
    "NaN": b'{"question": "x", "query": "x", "top_k": NaN}',
    "NUL in text": b'{"question": "a\\u0000b", "query": "a\\u0000b", "path": "/a\\u0000b"}',
    "UTF-16": '{"question": "x"}'.encode("utf-16"),
    "trailing data": b'{"question": "x", "query": "x"} {}',
}


def test_hostile_json_is_never_a_server_error_on_any_json_route(api: Api) -> None:
    # A route may ignore a field it does not know (an admin key made from `{"top_k": NaN}`),
    # but no body is a 500.
    routes = [
        (method.upper(), path.replace("{tenant_id}", api.tenant_id))
        for path, item in api.client.get("/openapi.json").json()["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(routes) >= 8, routes
    headers = {**auth(api.key), "Content-Type": "application/json"}
    for method, path in routes:
        for name, body in HOSTILE_JSON.items():
            response = api.client.request(method, path, headers=headers, content=body)
            assert response.status_code < 500, (method, path, name, response.text[:300])
            if response.status_code >= 400:
                assert response.json()["detail"], (method, path, name)
            if name in ("lone surrogate", "UTF-16"):
                assert response.status_code == 400, (method, path, name)
    lone = HOSTILE_JSON["lone surrogate"]
    response = api.client.post("/v1/query", headers=headers, content=lone)
    assert "lone surrogate escape (\\ud800 at offset 14)" in response.json()["detail"]
    # A surrogate pair is a character (an emoji), and so is an escaped backslash before a `u`.
    pair = b'{"query": "budget \\ud83d\\ude00 \\\\ud800"}'
    assert api.client.post("/v1/search", headers=headers, content=pair).status_code == 200
    # The upload form's JSON fields are not checked by the guard: their 422 echoes the input.
    form = {"principals": '["group:\\ud800"]', "metadata": '{"k": "\\udfff"}'}
    for field, value in form.items():
        response = api.client.post(
            "/v1/ingest/jobs", headers=auth(api.key), data={field: value},
            files=[("files", ("a.md", b"alpha"))],
        )  # fmt: skip
        assert response.status_code == 422, (field, response.text)
        assert "\\\\ud800" in response.text or "\\\\udfff" in response.text, response.text


def test_an_mcp_message_is_bounded_and_checked_like_a_v1_body(api: Api) -> None:
    # Replayed kind: /mcp authenticated first but then read (and parsed) a body of any size.
    mcp = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    limit = api.settings.http.max_body_bytes
    without_key = CountingBody(8 * MiB)
    assert _send(api, "POST", "/mcp", without_key, mcp).status_code == 401
    assert without_key.consumed == 0
    declared = CountingBody(150 * MiB)
    length = {"Content-Length": str(150 * MiB)}
    response = _send(api, "POST", "/mcp", declared, {**auth(api.key), **mcp, **length})
    assert response.status_code == 413, response.text
    assert "RAGKB_HTTP__MAX_BODY_BYTES" in response.json()["detail"]
    assert declared.consumed == 0
    streamed = CountingBody(150 * MiB, head=b'{"jsonrpc": "2.0", "params": "')
    assert _send(api, "POST", "/mcp", streamed, {**auth(api.key), **mcp}).status_code == 413
    assert streamed.consumed <= limit + MiB
    not_utf8 = api.client.post(
        "/mcp", content=b'{"jsonrpc": "2.0", "id": 1, "method": "caf\xe9"}',
        headers={**auth(api.key), **mcp},
    )  # fmt: skip
    assert not_utf8.status_code == 400
    assert "not UTF-8" in not_utf8.json()["detail"]


def test_every_response_datetime_is_in_utc(api: Api) -> None:
    response = api.client.post(
        "/v1/ingest/jobs", files=[("files", ("t.md", b"time"))], headers=auth(api.key)
    )
    assert response.json()["created_at"].endswith("Z")
    keys = api.client.get("/v1/admin/keys", headers=auth(api.key)).json()["keys"]
    assert all(k["created_at"].endswith("Z") for k in keys)


# -- bursts ------------------------------------------------------------------------------------


def test_a_tenants_default_burst_is_at_most_a_minute_of_its_rate() -> None:
    defaults = LimitSettings()
    assert effective_limits(LimitOverrides(queries_per_minute=6), defaults).query_burst == 6
    assert effective_limits(LimitOverrides(), defaults).query_burst == 30
    assert effective_limits(LimitOverrides(queries_per_minute=0.5), defaults).query_burst == 1
    own = LimitOverrides(queries_per_minute=6, query_burst=2, ingest_burst=3)
    assert effective_limits(own, defaults).query_burst == 2
    assert effective_limits(own, defaults).ingest_burst == 3


@pytest.mark.parametrize("buckets", ["in-process", "redis"])
def test_a_tenant_at_6_per_minute_gets_at_most_6_at_once(
    settings: Settings, embedder: LocalEmbedder, buckets: str, request: pytest.FixtureRequest
) -> None:
    if buckets == "redis":
        settings.limits.redis_url = request.getfixturevalue("redis_server").url
    else:
        settings.limits.redis_url = None
        settings.broker_url = None
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name=f"slow-{buckets}")
        tenant.queries_per_minute = 6
        key = issue_api_key(session, tenant=tenant).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            began = time.monotonic()
            statuses = [
                client.post("/v1/search", json={"query": "q"}, headers=auth(key)).status_code
                for _ in range(20)
            ]
            refills = int((time.monotonic() - began) * 6 / 60)
    finally:
        runtime.close()
    assert 6 <= statuses.count(200) <= 6 + refills, statuses
    assert statuses.count(429) == 20 - statuses.count(200)


def test_a_tenants_own_burst_is_set_through_the_admin_api(api: Api) -> None:
    response = api.client.put(
        f"/v1/admin/tenants/{api.tenant_id}/limits",
        json={"queries_per_minute": 1, "query_burst": 2},
        headers=auth(api.key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["limits"]["query_burst"] == 2
    statuses = [
        api.client.post("/v1/search", json={"query": "q"}, headers=auth(api.key)).status_code
        for _ in range(5)
    ]
    assert statuses.count(200) == 2, statuses


# -- shedding ----------------------------------------------------------------------------------


def _hold(gate: AdmissionGate, tenant_id: str) -> float:
    return asyncio.run(gate.acquire(tenant_id))


def test_a_full_server_answers_503_with_retry_after_at_once(api: Api) -> None:
    gate = api.runtime.admission
    others = [f"other-{i}" for i in range(gate.max_in_flight)]  # each within its own share
    held = [(tenant, _hold(gate, tenant)) for tenant in others]
    try:
        began = time.monotonic()
        response = api.client.post("/v1/search", json={"query": "q"}, headers=auth(api.key))
        waited = time.monotonic() - began
    finally:
        for tenant, admitted_at in held:
            gate.release(tenant, admitted_at)
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert waited < 2.0  # the queue wait (0.2 s here), not the work of the held requests
    after = api.client.post("/v1/search", json={"query": "q"}, headers=auth(api.key))
    assert after.status_code == 200


def test_a_tenant_at_its_share_gets_429_while_others_get_in(api: Api) -> None:
    gate = api.runtime.admission
    held = [_hold(gate, api.tenant_id) for _ in range(gate.max_per_tenant)]
    try:
        response = api.client.post("/v1/query", json={"question": "q"}, headers=auth(api.key))
        assert response.status_code == 429, response.text
        assert "Retry-After" in response.headers
        other = _hold(gate, "another-tenant")  # the process still has room for the others
        gate.release("another-tenant", other)
    finally:
        for admitted_at in held:
            gate.release(api.tenant_id, admitted_at)


def test_a_waiter_is_admitted_when_a_slot_frees_within_the_wait() -> None:
    gate = AdmissionGate(max_in_flight=1, max_per_tenant=1, max_queue=1, max_wait_s=5)

    async def scenario() -> list[str]:
        first = await gate.acquire("a")
        waiting = asyncio.create_task(gate.acquire("b"))
        await asyncio.sleep(0.05)
        outcomes = []
        try:
            await gate.acquire("c")  # the queue (1) is full
        except OverloadedError as exc:
            outcomes.append(exc.refusal.value)
        gate.release("a", first)
        second = await waiting
        outcomes.append(f"b in, {gate.in_flight()} in flight")
        gate.release("b", second)
        return outcomes

    assert asyncio.run(scenario()) == [Refusal.QUEUE.value, "b in, 1 in flight"]
    assert gate.in_flight() == 0
