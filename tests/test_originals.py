"""Original files kept after ingest: `GET /v1/documents/{id}/file` serves the current version's
bytes (tenant, principals and deletes honoured), a new version replaces them, a delete removes
them; the size, age and on/off settings. In-process on the embedded worker, both databases."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

from api.routers.documents import attachment
from client import RagkbClient
from client.errors import NotFoundError
from core.embedding import LocalEmbedder
from core.settings import Settings
from ingest.originals import Originals
from tests.apihelpers import Harness, auth, files_by_path, two_tenants, wait_for_job
from tests.docgen import make_pdf


@pytest.fixture
def api(settings: Settings, embedder: LocalEmbedder) -> Iterator[Harness]:
    with two_tenants(settings, embedder) as harness:
        yield harness


def _ingest(
    h: Harness, files: dict[str, bytes], *, principals: str | None = None
) -> dict[str, str]:
    """Upload and wait; the document id of each indexed path."""
    data = {"principals": principals} if principals else None
    response = h.client.post(
        "/v1/ingest/jobs", headers=auth(h.key_a), data=data,
        files=[("files", (name, body)) for name, body in files.items()],
    )  # fmt: skip
    assert response.status_code == 202, response.text
    job = wait_for_job(h.client, response.json()["id"], h.key_a)
    files_out = files_by_path(job)
    assert all(f["state"] == "done" for f in files_out.values()), job
    return {path: f["document_id"] for path, f in files_out.items()}


def _kept(h: Harness, document_id: str) -> list[str]:
    folder = h.runtime.settings.originals_dir / h.tenant_a / document_id
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_the_original_is_served_as_uploaded_and_follows_versions_and_deletes(
    api: Harness, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path / "r.pdf", [("Depot", ["The depot shipped 48,200 parcels."])])
    name = "reports/Relatório de março.pdf"
    ids = _ingest(api, {name: pdf.read_bytes(), "notes/a.md": b"# A\n\nfirst version\n"})
    url = f"/v1/documents/{ids[name]}/file"
    got = api.client.get(url, headers=auth(api.key_a))
    assert got.status_code == 200, got.text
    assert got.content == pdf.read_bytes()
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-length"] == str(len(pdf.read_bytes()))
    disposition = got.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Relat_rio de mar_o.pdf"')
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Relatório de março.pdf"
    assert got.headers["content-security-policy"].startswith("default-src 'none'")
    # Another tenant's key, an unknown id: the same 404.
    assert api.client.get(url, headers=auth(api.key_b)).status_code == 404
    missing = "/v1/documents/00000000-0000-0000-0000-000000000000/file"
    assert api.client.get(missing, headers=auth(api.key_a)).status_code == 404

    # A new version of the path: its bytes are served, the old version's are gone.
    note = ids["notes/a.md"]
    first = api.client.get(f"/v1/documents/{note}/file", headers=auth(api.key_a))
    assert first.content == b"# A\n\nfirst version\n"
    assert first.headers["content-type"].startswith("text/markdown")
    _ingest(api, {"notes/a.md": b"# A\n\nsecond version\n"})
    second = api.client.get(f"/v1/documents/{note}/file", headers=auth(api.key_a))
    assert second.content == b"# A\n\nsecond version\n"
    assert len(_kept(api, note)) == 1
    # The same bytes again (skipped as unchanged) keep the file.
    same = [("files", ("notes/a.md", b"# A\n\nsecond version\n"))]
    again = api.client.post("/v1/ingest/jobs", headers=auth(api.key_a), files=same)
    job = wait_for_job(api.client, again.json()["id"], api.key_a)
    assert files_by_path(job)["notes/a.md"]["state"] == "skipped"
    assert len(_kept(api, note)) == 1

    # A delete removes the bytes with the chunks.
    assert api.client.delete(f"/v1/documents/{note}", headers=auth(api.key_a)).status_code == 204
    assert api.client.get(f"/v1/documents/{note}/file", headers=auth(api.key_a)).status_code == 404
    assert _kept(api, note) == []
    assert not (api.runtime.settings.originals_dir / api.tenant_a / note).exists()


def test_principals_decide_who_may_download(api: Harness) -> None:
    ids = _ingest(api, {"hr/pay.md": b"# Pay\n\nsalaries\n"}, principals='["group:hr"]')
    url = f"/v1/documents/{ids['hr/pay.md']}/file"
    hr = api.client.get(url, params={"principals": "group:hr"}, headers=auth(api.key_a))
    assert hr.status_code == 200
    assert hr.content == b"# Pay\n\nsalaries\n"
    other = api.client.get(url, params={"principals": "group:sales"}, headers=auth(api.key_a))
    assert other.status_code == 404
    # The Python client: the same bytes, the same refusal.
    kb = RagkbClient("http://testserver", api.key_a, http_client=api.client)
    assert kb.document_file(ids["hr/pay.md"], principals=["group:hr"]) == b"# Pay\n\nsalaries\n"
    with pytest.raises(NotFoundError):
        kb.document_file(ids["hr/pay.md"], principals=["group:sales"])
    listed = kb.list_documents(updated_since=datetime.now(UTC) - timedelta(hours=1))
    assert [d.path for d in listed.documents] == ["hr/pay.md"]
    assert kb.list_documents(updated_since=datetime.now(UTC) + timedelta(hours=1)).documents == []


def test_a_file_not_kept_is_a_404_that_says_so(api: Harness) -> None:
    ids = _ingest(api, {"gone.md": b"# Gone\n\ntext\n"})
    document_id = ids["gone.md"]
    for path in (api.runtime.settings.originals_dir / api.tenant_a / document_id).iterdir():
        path.unlink()
    response = api.client.get(f"/v1/documents/{document_id}/file", headers=auth(api.key_a))
    assert response.status_code == 404
    assert "not kept" in response.json()["detail"]
    # The chunks and text are still there.
    text = api.client.get(f"/v1/documents/{document_id}/text", headers=auth(api.key_a))
    assert "text" in text.json()["text"]


def _staged(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_settings_decide_what_is_kept_and_for_how_long(tmp_path: Path) -> None:
    root = tmp_path / "originals"
    doc = "7d5c6f8e-0000-4000-8000-000000000001"
    off = Originals(root, keep=False)
    off.store_version(tenant_id="t", document_id=doc, version="v1",
                      staged=_staged(tmp_path, "a", b"abc"))  # fmt: skip
    assert off.find(tenant_id="t", document_id=doc, version="v1") is None

    small = Originals(root, max_bytes=3)
    small.store_version(tenant_id="t", document_id=doc, version="v1",
                        staged=_staged(tmp_path, "b", b"abcd"))  # fmt: skip
    assert small.find(tenant_id="t", document_id=doc, version="v1") is None
    staged = _staged(tmp_path, "c", b"abc")
    small.store_version(tenant_id="t", document_id=doc, version="v2", staged=staged)
    kept = small.find(tenant_id="t", document_id=doc, version="v2")
    assert kept is not None
    assert kept.read_bytes() == b"abc"
    assert staged.is_file()  # linked, not moved: the caller deletes it after its commit
    # A newer version that is too large to keep still drops the older one's bytes.
    small.store_version(tenant_id="t", document_id=doc, version="v3",
                        staged=_staged(tmp_path, "d", b"abcdef"))  # fmt: skip
    assert not (root / "t" / doc).exists()

    aging = Originals(root, max_age=timedelta(days=1))
    aging.store_version(tenant_id="t", document_id=doc, version="v4",
                        staged=_staged(tmp_path, "e", b"abc"))  # fmt: skip
    assert aging.find(tenant_id="t", document_id=doc, version="v4") is not None
    two_days_ago = time.time() - 2 * 86400
    os.utime(root / "t" / doc / "v4", (two_days_ago, two_days_ago))
    assert aging.purge_expired(tenant_id="t") == 1
    assert aging.find(tenant_id="t", document_id=doc, version="v4") is None

    with pytest.raises(ValueError, match="safe path"):
        aging.path_for("../x", doc, "v1")


def test_content_disposition_names_are_safe() -> None:
    assert attachment("a/b/report.pdf") == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )
    header = attachment('x/"evil"\\name\r\n.md')
    assert "\r" not in header
    assert "\n" not in header
    assert header.startswith('attachment; filename="_evil__name__.md"; ')
    assert header.endswith("filename*=UTF-8''%22evil%22%5Cname%0D%0A.md")
