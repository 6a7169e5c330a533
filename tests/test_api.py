"""The HTTP API in-process, on the embedded default: real embedder, store and Celery worker."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.embedding import LocalEmbedder
from core.settings import Settings
from core.vectorstore import HybridQuery
from tests.apihelpers import Harness, auth, files_by_path, two_tenants, wait_for_job
from tests.docgen import make_pdf


@pytest.fixture
def api(settings: Settings, embedder: LocalEmbedder) -> Iterator[Harness]:
    settings.ingest.max_file_bytes = 200_000
    with two_tenants(settings, embedder) as harness:
        yield harness


def upload(h: Harness, key: str, files: dict[str, bytes]) -> dict[str, object]:
    response = h.client.post(
        "/v1/ingest/jobs",
        headers=auth(key),
        files=[("files", (name, data)) for name, data in files.items()],
    )
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


HANDBOOK = b"# Handbook\n\n## Vacation\n\nEmployees receive 25 days of paid vacation per year.\n"


def test_every_v1_endpoint_needs_a_valid_key(api: Harness) -> None:
    calls = [
        ("get", "/v1/ingest/jobs/x", {}),
        ("get", "/v1/documents", {}),
        ("post", "/v1/query", {"json": {"question": "hi"}}),
        ("post", "/v1/ingest/jobs", {"files": [("files", ("a.md", b"x"))]}),
    ]
    for method, url, kwargs in calls:
        for headers in ({}, auth("rkb_nope_nope"), {"Authorization": "Basic abc"}):
            response = getattr(api.client, method)(url, headers=headers, **kwargs)
            assert response.status_code == 401, (url, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


def test_health_and_readiness_need_no_key(api: Harness) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_folder_upload_indexes_good_files_and_fails_bad_ones(api: Harness, tmp_path: Path) -> None:
    pdf = make_pdf(
        tmp_path / "r.pdf",
        [
            ("Report", ["This report covers the third quarter of the year."]),
            ("Depot", ["The Rotterdam depot shipped 48,200 parcels in September."]),
        ],
    )
    job = upload(
        api,
        api.key_a,
        {
            "docs/handbook.md": HANDBOOK,
            "docs/report.pdf": pdf.read_bytes(),
            "docs/broken.pdf": b"%PDF-1.4 this is not really a pdf",
            "docs/empty.txt": b"",
            "../escape.md": b"# nope",
            "docs/tool.exe": b"MZ",
        },
    )
    assert job["status"] in ("queued", "running", "completed_with_errors")
    finished = wait_for_job(api.client, str(job["id"]), api.key_a)
    files = files_by_path(finished)
    assert files["docs/handbook.md"]["state"] == "done"
    assert files["docs/report.pdf"]["state"] == "done"
    assert files["docs/report.pdf"]["chunk_count"] == 2  # one per page
    assert "corrupt" in files["docs/broken.pdf"]["error"]
    assert "empty" in files["docs/empty.txt"]["error"]
    assert "'..'" in files["../escape.md"]["error"]
    assert "unsupported file type" in files["docs/tool.exe"]["error"]
    assert finished["status"] == "completed_with_errors"
    progress = finished["progress"]
    counts = {"total": 6, "queued": 0, "running": 0, "done": 2, "failed": 4, "skipped": 0}
    assert {k: progress[k] for k in counts} == counts
    assert progress["fraction"] == 1.0
    assert progress["chunks_indexed"] == files["docs/handbook.md"]["chunk_count"] + 2
    assert progress["eta_s"] == 0.0
    assert progress["files_per_s"] > 0

    docs = api.client.get("/v1/documents", headers=auth(api.key_a)).json()["documents"]
    assert [d["path"] for d in docs] == ["docs/handbook.md", "docs/report.pdf"]
    assert api.client.get("/v1/documents", headers=auth(api.key_b)).json()["documents"] == []
    # Another tenant cannot read the job either.
    other = api.client.get(f"/v1/ingest/jobs/{job['id']}", headers=auth(api.key_b))
    assert other.status_code == 404


def test_reupload_unchanged_is_skipped_and_a_new_version_replaces_the_old(api: Harness) -> None:
    first = wait_for_job(
        api.client, str(upload(api, api.key_a, {"h.md": HANDBOOK})["id"]), api.key_a
    )
    document_id = first["files"][0]["document_id"]
    assert api.runtime.store.count(tenant_id=api.tenant_a, document_id=document_id) == 1

    again = wait_for_job(
        api.client, str(upload(api, api.key_a, {"h.md": HANDBOOK})["id"]), api.key_a
    )
    assert again["files"][0]["state"] == "skipped"
    assert "unchanged" in again["files"][0]["error"]

    longer = HANDBOOK + b"\n## Equipment\n\nLaptops are replaced every three years.\n"
    changed = wait_for_job(
        api.client, str(upload(api, api.key_a, {"h.md": longer})["id"]), api.key_a
    )
    assert changed["files"][0]["state"] == "done"
    assert changed["files"][0]["document_id"] == document_id
    assert api.runtime.store.count(tenant_id=api.tenant_a, document_id=document_id) == 2
    hits = api.runtime.store.search(
        tenant_id=api.tenant_a,
        query=HybridQuery(limit=10, dense=api.runtime.embedder.embed_query("laptops")),
    )
    # Only the new version's chunks remain searchable.
    assert {h.payload["version"] for h in hits} == {hashlib.sha256(longer).hexdigest()}


def test_upload_without_files_is_422(api: Harness) -> None:
    response = api.client.post("/v1/ingest/jobs", headers=auth(api.key_a))
    assert response.status_code == 422


def test_file_over_the_limit_is_413_and_nothing_is_stored(api: Harness) -> None:
    response = api.client.post(
        "/v1/ingest/jobs",
        headers=auth(api.key_a),
        files=[
            ("files", ("ok.md", HANDBOOK)),
            ("files", ("big.txt", b"a" * 200_001)),
        ],
    )
    assert response.status_code == 413
    assert "big.txt" in response.json()["detail"]
    uploads = api.runtime.settings.uploads_dir
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


def test_question_validation(api: Harness) -> None:
    assert api.client.post("/v1/query", headers=auth(api.key_a), json={}).status_code == 422
    blank = api.client.post("/v1/query", headers=auth(api.key_a), json={"question": "   "})
    assert blank.status_code == 422
    long = api.client.post("/v1/query", headers=auth(api.key_a), json={"question": "x" * 2001})
    assert long.status_code == 413
    bad_k = api.client.post(
        "/v1/query", headers=auth(api.key_a), json={"question": "hi", "top_k": 0}
    )
    assert bad_k.status_code == 422


def test_no_evidence_answers_without_the_reader(api: Harness) -> None:
    # The reader URL in these settings points nowhere: reaching it would be a 503.
    response = api.client.post(
        "/v1/query", headers=auth(api.key_b), json={"question": "How many vacation days?"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answered"] is False
    assert body["sources"] == []
    assert body["citations"] == []
    assert body["stages"] == ["hybrid", "no_evidence"]


def test_unreachable_reader_is_503(api: Harness) -> None:
    wait_for_job(api.client, str(upload(api, api.key_a, {"h.md": HANDBOOK})["id"]), api.key_a)
    response = api.client.post(
        "/v1/query", headers=auth(api.key_a), json={"question": "How many vacation days?"}
    )
    assert response.status_code == 503
    assert "reader unavailable" in response.json()["detail"]


def test_openapi_documents_the_v1_routes(api: Harness) -> None:
    schema = api.client.get("/openapi.json").json()
    assert {"/v1/ingest/jobs", "/v1/ingest/jobs/{job_id}", "/v1/documents", "/v1/query"} <= set(
        schema["paths"]
    )


def test_metrics_label_requests_by_route_template(api: Harness) -> None:
    api.client.get("/v1/ingest/jobs/some-id", headers=auth(api.key_a))
    text = api.client.get("/metrics").text
    assert 'route="/v1/ingest/jobs/{job_id}"' in text
    assert "some-id" not in text  # the label set stays bounded


def test_delete_removes_every_chunk_and_only_the_callers(api: Harness) -> None:
    longer = HANDBOOK + b"\n## Equipment\n\nLaptops are replaced every three years.\n"
    job = wait_for_job(api.client, str(upload(api, api.key_a, {"h.md": longer})["id"]), api.key_a)
    document_id = job["files"][0]["document_id"]
    assert api.runtime.store.count(tenant_id=api.tenant_a, document_id=document_id) == 2

    other = api.client.delete(f"/v1/documents/{document_id}", headers=auth(api.key_b))
    assert other.status_code == 404
    assert api.runtime.store.count(tenant_id=api.tenant_a, document_id=document_id) == 2

    deleted = api.client.delete(f"/v1/documents/{document_id}", headers=auth(api.key_a))
    assert deleted.status_code == 204
    assert api.runtime.store.count(tenant_id=api.tenant_a, document_id=document_id) == 0
    assert api.client.get("/v1/documents", headers=auth(api.key_a)).json()["documents"] == []
    again = api.client.delete(f"/v1/documents/{document_id}", headers=auth(api.key_a))
    assert again.status_code == 404
    # Deleted means gone: the same content can be ingested again (not skipped as unchanged).
    job = wait_for_job(api.client, str(upload(api, api.key_a, {"h.md": longer})["id"]), api.key_a)
    assert job["files"][0]["state"] == "done"


def test_search_ranks_hybrid_and_filters_inside_the_tenant(api: Harness) -> None:
    job = upload(
        api,
        api.key_a,
        {
            "policies/travel.md": b"# Travel\n\nEconomy class is booked for short flights.\n",
            "policies/it.md": b"# IT\n\nPasswords are rotated every ninety days by the helpdesk.\n",
            "notes/vacation.txt": HANDBOOK,
        },
    )
    wait_for_job(api.client, str(job["id"]), api.key_a)
    wait_for_job(api.client, str(upload(api, api.key_b, {"x.md": HANDBOOK})["id"]), api.key_b)

    def search(key: str, **body: object) -> dict[str, Any]:
        response = api.client.post("/v1/search", headers=auth(key), json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    result = search(api.key_a, query="how often are passwords rotated", top_k=3)
    assert result["hits"][0]["path"] == "policies/it.md"
    assert result["stages"] == ["hybrid"]
    assert result["hits"][0]["dense_score"] > 0
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3]

    lexical = search(api.key_a, query="helpdesk", mode="lexical")
    assert [h["path"] for h in lexical["hits"]] == ["policies/it.md"]
    assert lexical["hits"][0]["dense_score"] is None

    under = search(api.key_a, query="vacation days", filters={"path_prefix": "/policies"})
    assert {h["path"] for h in under["hits"]} == {"policies/travel.md", "policies/it.md"}
    typed = search(api.key_a, query="vacation days", filters={"file_types": [".TXT"]})
    assert {h["path"] for h in typed["hits"]} == {"notes/vacation.txt"}

    # Tenant b holds the handbook too: a never sees it and b sees only its own.
    other = search(api.key_b, query="paid vacation", top_k=10)
    assert {h["path"] for h in other["hits"]} == {"x.md"}


def test_search_rejects_bad_input_with_reasons(api: Harness) -> None:
    for body in (
        {"query": ""},
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": 101},
        {"query": "x", "mode": "fuzzy"},
        {"query": "x", "filters": {"indexed_after": "yesterday"}},
    ):
        response = api.client.post("/v1/search", headers=auth(api.key_a), json=body)
        assert response.status_code == 422, (body, response.text)
    response = api.client.post("/v1/search", json={"query": "x"})
    assert response.status_code == 401


def upload_with(h: Harness, key: str, files: dict[str, bytes], **fields: object) -> dict[str, Any]:
    response = h.client.post(
        "/v1/ingest/jobs",
        headers=auth(key),
        files=[("files", (name, data)) for name, data in files.items()],
        data={name: json.dumps(value) for name, value in fields.items()},
    )
    assert response.status_code == 202, response.text
    return wait_for_job(h.client, str(response.json()["id"]), key)


def test_access_lists_and_metadata_are_enforced_inside_qdrant(api: Harness) -> None:
    salaries = {"finance/salaries.md": b"# Salaries\n\nThe salary bands are reviewed in March.\n"}
    upload_with(api, api.key_a, salaries, principals=["group:finance"], metadata={"team": "fin"})
    upload_with(api, api.key_a, {"public/review.md": b"# Reviews\n\nReviews happen in March.\n"})

    def paths(**body: object) -> set[str]:
        response = api.client.post(
            "/v1/search", headers=auth(api.key_a), json={"query": "March review", **body}
        )
        assert response.status_code == 200, response.text
        return {h["path"] for h in response.json()["hits"]}

    both = {"finance/salaries.md", "public/review.md"}
    assert paths() == both  # a key acting for no end user: no per-document check
    assert paths(principals=["user:bob", "group:finance"]) == both
    assert paths(principals=["group:hr"]) == {"public/review.md"}
    assert paths(filters={"metadata": {"team": "fin"}}) == {"finance/salaries.md"}
    assert paths(principals=["group:hr"], filters={"metadata": {"team": "fin"}}) == set()

    # Same bytes, new access list: re-indexed (not skipped as unchanged), and enforced at once.
    again = upload_with(api, api.key_a, salaries, principals=["group:hr"], metadata={"team": "fin"})
    assert again["files"][0]["state"] == "done"
    assert paths(principals=["group:finance"]) == {"public/review.md"}
    assert paths(principals=["group:hr"]) == both
    listed = api.client.get("/v1/documents", headers=auth(api.key_a)).json()["documents"]
    by_path = {d["path"]: d for d in listed}
    assert by_path["finance/salaries.md"]["principals"] == ["group:hr"]
    assert by_path["finance/salaries.md"]["metadata"] == {"team": "fin"}
    assert by_path["public/review.md"]["principals"] is None
    same = upload_with(api, api.key_a, salaries, principals=["group:hr"], metadata={"team": "fin"})
    assert same["files"][0]["state"] == "skipped"


def test_bad_access_fields_are_refused_before_storage(api: Harness) -> None:
    for fields in (
        {"principals": "[]"},
        {"principals": "not json"},
        {"principals": '"group:a"'},
        {"metadata": '{"a.b": "x"}'},
        {"metadata": '{"team": 5}'},
    ):
        response = api.client.post(
            "/v1/ingest/jobs",
            headers=auth(api.key_a),
            files=[("files", ("a.md", b"# A\n\ntext\n"))],
            data=fields,
        )
        assert response.status_code == 422, (fields, response.text)
    assert api.client.get("/v1/documents", headers=auth(api.key_a)).json()["documents"] == []


def test_a_cell_deep_in_a_long_sheet_is_found_with_its_headers(
    api: Harness, tmp_path: Path
) -> None:
    from tests.docgen import make_merged_xlsx, region_rows

    regions = {name: {27: count} for name, count in
               [("North", 601), ("East", 455), ("West", 512), ("South", 381)]}  # fmt: skip
    path = make_merged_xlsx(tmp_path / "bands.xlsx", region_rows(regions, bands=40))
    job = upload(api, api.key_a, {"bands.xlsx": path.read_bytes()})
    assert wait_for_job(api.client, str(job["id"]), api.key_a)["status"] == "completed"
    response = api.client.post(
        "/v1/search", headers=auth(api.key_a), json={"query": "South Band 27 count", "top_k": 3}
    )
    assert response.status_code == 200, response.text
    top = response.json()["hits"][0]
    # The region is merged down 40 rows and the header is 120 rows up: the row still says both.
    assert "Region: South | Band: Band 27 | Count: 381" in top["text"].split("\n")
    assert (top["page"], top["section"]) == (1, "Bands")


WRONG_LAYER = "Invoice total 9999 USD\nPayment due within ninety days"  # reads as words


def test_ocr_force_reads_scans_whose_text_layer_is_wrong(api: Harness, tmp_path: Path) -> None:
    from ingest.ocr import languages
    from tests.docgen import make_mixed_pdf, page_image

    markdown = [("files", ("a.md", b"# A\n\nx\n"))]
    bad = api.client.post(
        "/v1/ingest/jobs", headers=auth(api.key_a), data={"ocr": "sometimes"}, files=markdown
    )
    assert bad.status_code == 422, bad.text
    if languages() is None:
        pytest.skip("Tesseract is not installed")
    scan = page_image("Invoice total 4280 EUR\nPayment due within thirty days")
    pdf = make_mixed_pdf(tmp_path / "s.pdf", [scan], hidden_text={1: WRONG_LAYER})
    files = [("files", ("scan.pdf", pdf.read_bytes()))]
    for mode, expected in (("auto", "9999"), ("force", "4280")):
        response = api.client.post(
            "/v1/ingest/jobs", headers=auth(api.key_a), data={"ocr": mode}, files=files
        )
        assert response.status_code == 202, response.text
        job = wait_for_job(api.client, response.json()["id"], api.key_a)
        assert files_by_path(job)["scan.pdf"]["state"] == "done"  # force re-reads unchanged bytes
        hits = api.client.post(
            "/v1/search",
            headers=auth(api.key_a),
            json={"query": "invoice total", "mode": "lexical"},
        ).json()["hits"]
        assert expected in hits[0]["text"]


def test_jobs_list_newest_first_in_pages_and_per_tenant(api: Harness) -> None:
    ids = [upload(api, api.key_a, {f"j{i}.md": HANDBOOK})["id"] for i in range(3)]
    other = upload(api, api.key_b, {"b.md": HANDBOOK})["id"]
    first = api.client.get("/v1/ingest/jobs?limit=2", headers=auth(api.key_a)).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    assert first["jobs"][0]["files"] == []
    assert first["jobs"][0]["progress"]["total"] == 1
    second = api.client.get(
        "/v1/ingest/jobs", params={"limit": 2, "cursor": first["next_cursor"]},
        headers=auth(api.key_a),
    ).json()  # fmt: skip
    assert [j["id"] for j in second["jobs"]] == [ids[0]]
    assert second["next_cursor"] is None
    seen_by_b = api.client.get("/v1/ingest/jobs", headers=auth(api.key_b)).json()["jobs"]
    assert [j["id"] for j in seen_by_b] == [other]
    bad = api.client.get("/v1/ingest/jobs?cursor=zz", headers=auth(api.key_a))
    assert bad.status_code == 422
    assert "cursor" in str(bad.json()["detail"])
    for job_id in ids:
        wait_for_job(api.client, job_id, api.key_a)


def test_retry_indexes_a_failed_file_from_its_kept_bytes(api: Harness, tmp_path: Path) -> None:
    from ingest.jobs import add_job_file, create_job
    from ingest.pipeline import fail_job_files
    from ingest.staging import stage_stream

    # A file that failed for a passing reason (a worker's internal error), its bytes kept.
    with api.runtime.session_factory() as session:
        job = create_job(session, tenant_id=api.tenant_a)
        staged = stage_stream(
            io.BytesIO(HANDBOOK), api.runtime.settings.uploads_dir / "retry.md", max_bytes=10**6
        )
        job_file = add_job_file(
            session, job=job, position=0, path="retry.md", staged_path=str(staged.staged_path),
            size_bytes=staged.size_bytes, sha256=staged.sha256,
        )  # fmt: skip
        session.commit()
        job_id, file_id = job.id, job_file.id
    fail_job_files([file_id], api.runtime.binding.ingest, reason="internal error (OSError)")
    failed = api.client.get(f"/v1/ingest/jobs/{job_id}", headers=auth(api.key_a)).json()
    assert failed["files"][0]["error"] == "internal error (OSError)"

    assert (
        api.client.post(f"/v1/ingest/jobs/{job_id}/retry", headers=auth(api.key_b)).status_code
        == 404
    )
    retried = api.client.post(f"/v1/ingest/jobs/{job_id}/retry", headers=auth(api.key_a))
    assert retried.status_code == 202, retried.text
    done = wait_for_job(api.client, job_id, api.key_a)
    assert done["status"] == "completed"
    assert done["files"][0]["document_id"]
    assert not staged.staged_path.exists()  # indexed: its bytes are deleted as usual
    again = api.client.post(f"/v1/ingest/jobs/{job_id}/retry", headers=auth(api.key_a))
    assert again.status_code == 409
    assert "no failed files" in again.json()["detail"]


def test_retry_of_a_corrupt_file_fails_again_and_without_bytes_is_refused(api: Harness) -> None:
    job = upload(api, api.key_a, {"broken.pdf": b"not a pdf at all", "ok.md": HANDBOOK})
    first = files_by_path(wait_for_job(api.client, job["id"], api.key_a))
    reason = first["broken.pdf"]["error"]
    assert first["broken.pdf"]["state"] == "failed"
    assert reason
    retried = api.client.post(f"/v1/ingest/jobs/{job['id']}/retry", headers=auth(api.key_a))
    assert retried.status_code == 202
    assert files_by_path(retried.json())["ok.md"]["state"] == "done"  # left alone
    second = files_by_path(wait_for_job(api.client, job["id"], api.key_a))
    assert second["broken.pdf"]["error"] == reason
    # The bytes are kept only so long: past it the retry is refused with the reason.
    kept = [f.staged_path for f in _job_files(api, job["id"]) if f.staged_path]
    assert len(kept) == 1
    assert Path(kept[0]).is_file()
    api.runtime.settings.ingest.keep_failed_files_h = 0
    upload(api, api.key_a, {"next.md": HANDBOOK})  # the tenant's next upload purges them
    assert not Path(kept[0]).exists()
    gone = api.client.post(f"/v1/ingest/jobs/{job['id']}/retry", headers=auth(api.key_a))
    assert gone.status_code == 409
    assert "no longer kept" in gone.json()["detail"]


def _job_files(api: Harness, job_id: str) -> list[Any]:
    from core.models import JobFile

    with api.runtime.session_factory() as session:
        return list(session.scalars(select(JobFile).where(JobFile.job_id == job_id)))
