"""File names as clients send them (RFC 5987/6266 `filename*`, encoded words, NFD, Windows)."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.multipart import upload_file_name
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import create_tenant, issue_api_key
from tests.apihelpers import auth, files_by_path, wait_for_job

NAME = "报告 été.md"
STAR = "filename*=UTF-8''" + quote(NAME)
WORD = '"=?utf-8?B?' + base64.b64encode(NAME.encode()).decode() + '?="'


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        # Some Java clients: `filename*` alone (Starlette took the part for a form field).
        (f"form-data; name=files; {STAR}", NAME),
        # .NET's MultipartFormDataContent: an encoded word, then `filename*`.
        (f"form-data; name=files; filename={WORD}; {STAR}", NAME),
        (f"form-data; name=files; {STAR}; filename=fallback.md", NAME),
        # An encoded word alone (was stored as `=?utf-8?B?…?=`: "unsupported file type").
        (f"form-data; name=files; filename={WORD}", NAME),
        ('form-data; name="files"; filename="plain.md"', "plain.md"),
        ('form-data; name="files"; filename="a;b \\"q\\".md"', 'a;b "q".md'),
        # RFC 2231 continuations, and a Latin-1 `filename*`.
        (
            "form-data; name=files; filename*0*=UTF-8''%E6%8A%A5; filename*1*=%E5%91%8A.md",
            "报告.md",
        ),
        ("form-data; name=files; filename*=iso-8859-1'fr'caf%E9.md", "café.md"),
        # A Windows full path keeps its folders (python-multipart keeps only `x.md`).
        ('form-data; name="files"; filename="C:\\a\\x.md"', "C:\\a\\x.md"),
        ('form-data; name="principals"', None),
    ],
)
def test_file_name_from_content_disposition(disposition: str, expected: str | None) -> None:
    assert upload_file_name(disposition.encode()) == expected


def test_raw_utf8_file_names_are_read_as_utf8() -> None:
    raw = 'form-data; name="files"; filename="été.md"'.encode()
    assert upload_file_name(raw) == "été.md"


@pytest.fixture
def client(settings: Settings, embedder: LocalEmbedder) -> Iterator[tuple[TestClient, str]]:
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="acme")
        key = issue_api_key(session, tenant=tenant).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as test_client:
            yield test_client, key
    finally:
        runtime.close()


def _multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "ragkb-test-boundary"
    body = b""
    for disposition, data in parts:
        body += (
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_uploads_keep_the_names_clients_send(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    nfd = unicodedata.normalize("NFD", "Données/été.md")
    body, content_type = _multipart([
        (f"form-data; name=files; filename*=UTF-8''{quote('java/报告.md')}",
         b"# Java\n\nSent with filename* alone.\n"),
        (f"form-data; name=files; filename=\"=?utf-8?B?"
         f"{base64.b64encode('net/été.md'.encode()).decode()}?=\"; "
         f"filename*=UTF-8''{quote('net/été.md')}", b"# NET\n\nSent by .NET.\n"),
        (f'form-data; name="files"; filename="{nfd}"',
         b"# Mac\n\nSent from macOS.\n"),
        ('form-data; name="files"; filename="C:\\Users\\ana\\win\\x.md"',
         b"# Win\n\nSent from Windows.\n"),
    ])  # fmt: skip
    response = test_client.post(
        "/v1/ingest/jobs",
        headers={**auth(key), "Content-Type": content_type},
        content=body,
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(test_client, response.json()["id"], key)
    states = {path: f["state"] for path, f in files_by_path(job).items()}
    assert states == {
        "java/报告.md": "done",
        "net/été.md": "done",
        "Données/été.md": "done",  # stored in NFC
        "Users/ana/win/x.md": "done",  # the drive is dropped, the folders kept
    }
