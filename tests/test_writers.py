"""Writers of one document: uploads, folder jobs, re-uploads and deletes racing on a few paths.

Versions of a path apply in the order they were accepted, whichever worker finishes last; a
version's cleanup never removes a newer version's points; "unchanged" is believed only when the
store holds the version; a delete wins over uploads accepted before it. Real workers (two
threads of the embedded Celery worker), both databases and brokers (--db, --broker).
"""

from __future__ import annotations

import hashlib
import io
import random
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.models import FileState, JobFile
from core.settings import Settings
from core.tenancy import create_tenant, issue_api_key
from core.vectorstore import VERSION_FIELD
from ingest.identity import document_id_for
from ingest.jobs import add_job_file, create_job, number_versions
from ingest.originals import originals_for
from ingest.pipeline import IngestDependencies, process_job_files
from ingest.reconcile import reconcile
from ingest.staging import stage_stream
from tests.apihelpers import auth, files_by_path, wait_for_job


@dataclass
class Service:
    client: TestClient
    runtime: Runtime
    key: str
    tenant_id: str
    share: Path


@pytest.fixture
def service(settings: Settings, embedder: LocalEmbedder, tmp_path: Path) -> Iterator[Service]:
    share = tmp_path / "share"
    share.mkdir()
    settings.ingest.allowed_roots = [share]
    # Small tasks: one job's files spread over both worker threads and interleave with others.
    settings.ingest.files_per_task = 4
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="acme")
        key = issue_api_key(session, tenant=tenant).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield Service(client, runtime, key, tenant.id, share)
    finally:
        runtime.close()


def _post_files(service: Service, files: list[tuple[str, bytes]]) -> Any:
    return service.client.post(
        "/v1/ingest/jobs",
        headers=auth(service.key),
        files=[("files", (name, data)) for name, data in files],
    )


def _post_raw(service: Service, dispositions: tuple[bytes, ...]) -> Any:
    """A multipart upload whose parts carry these Content-Disposition parameters as sent."""
    body = b"".join(
        b'--XyZ\r\nContent-Disposition: form-data; name="files"; ' + disposition
        + b"\r\nContent-Type: text/plain\r\n\r\nsame path\r\n"
        for disposition in dispositions
    ) + b"--XyZ--\r\n"  # fmt: skip
    headers = {**auth(service.key), "Content-Type": "multipart/form-data; boundary=XyZ"}
    return service.client.post("/v1/ingest/jobs", headers=headers, content=body)


def _start(service: Service, files: list[tuple[str, bytes]]) -> str:
    response = _post_files(service, files)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _listed(service: Service) -> dict[str, dict[str, Any]]:
    response = service.client.get("/v1/documents", headers=auth(service.key))
    assert response.status_code == 200, response.text
    return {d["path"]: d for d in response.json()["documents"]}


def _texts(service: Service, document_id: str) -> list[str]:
    points, _ = service.runtime.store.scroll(
        tenant_id=service.tenant_id, document_id=document_id, limit=10_000
    )
    return [str(p.payload.get("text", "")) for p in points]


def _filler(tag: str, count: int, words: int = 900) -> list[tuple[str, bytes]]:
    """Files that make a batch slow to embed (many distinct chunks)."""
    rng = random.Random(tag)
    vocabulary = [f"w{n}" for n in range(5000)]
    return [
        (f"filler/{tag}-{i}.md", " ".join(rng.choices(vocabulary, k=words)).encode())
        for i in range(count)
    ]


def test_a_path_twice_in_one_upload_is_refused(service: Service) -> None:
    response = _post_files(service, [("dup/same.md", b"# One\n\nfirst"), ("dup/same.md", b"two")])
    assert response.status_code == 422, response.text
    assert "dup/same.md" in str(response.json()["detail"])
    # A Windows name and a POSIX name of one file are one path once normalised (the drive goes,
    # the folders stay).
    response = _post_files(service, [("C:\\a\\x.md", b"first"), ("a/x.md", b"second")])
    assert response.status_code == 422, response.text
    assert "a/x.md" in str(response.json()["detail"])
    # Every spelling the normalisation folds into one path (NFD as macOS sends it, `./`, an empty
    # segment, a drive-relative Windows name, RFC 2231/2047 names beside a plain one).
    nfc, nfd = unicodedata.normalize("NFC", "café.md"), unicodedata.normalize("NFD", "café.md")
    for names, repeated in (
        ((nfc, nfd), nfc),
        (("./b.md", "b.md"), "b.md"),
        (("d//b.md", "d/./b.md"), "d/b.md"),
        (("C:q.md", "q.md"), "q.md"),
    ):
        response = _post_files(service, [(names[0], b"first"), (names[1], b"second")])
        assert response.status_code == 422, (names, response.text)
        assert repeated in str(response.json()["detail"]), names
    for dispositions, repeated in (
        ((b"filename*=UTF-8''d%C3%BCp.md", 'filename="düp.md"'.encode()), "düp.md"),
        ((b'filename="=?utf-8?B?ZMO8cDIubWQ=?="', 'filename="düp2.md"'.encode()), "düp2.md"),
    ):
        response = _post_raw(service, dispositions)
        assert response.status_code == 422, (dispositions, response.text)
        assert repeated in str(response.json()["detail"])
    # A folder on a file system that keeps NFC and NFD names apart: one path, refused too.
    folder = service.share / "accents"
    folder.mkdir()
    (folder / nfc).write_bytes(b"nfc")
    (folder / nfd).write_bytes(b"nfd")
    response = service.client.post(
        "/v1/ingest/jobs", headers=auth(service.key), json={"path": str(folder)}
    )
    assert response.status_code == 422, response.text
    assert nfc in str(response.json()["detail"])
    assert _listed(service) == {}
    # Two Windows folders holding the same name are two paths (the parser no longer cuts them).
    job = wait_for_job(
        service.client,
        _start(service, [("C:\\a\\x.md", b"# A\n\nfirst"), ("C:\\b\\x.md", b"# B\n\nsecond")]),
        service.key,
    )
    assert {p: f["state"] for p, f in files_by_path(job).items()} == {
        "a/x.md": "done",
        "b/x.md": "done",
    }
    listed = _listed(service)
    for path in ("a/x.md", "b/x.md"):
        document = listed[path]
        stored = service.runtime.store.count(
            tenant_id=service.tenant_id, document_id=document["id"]
        )
        assert stored == document["chunk_count"] == 1
    # One version of the path is indexed as usual, and every chunk of it is in the store.
    job = wait_for_job(
        service.client, _start(service, [("dup/same.md", b"# One\n\nfirst")]), service.key
    )
    assert files_by_path(job)["dup/same.md"]["state"] == "done"
    document = _listed(service)["dup/same.md"]
    stored = service.runtime.store.count(tenant_id=service.tenant_id, document_id=document["id"])
    assert stored == document["chunk_count"] == 1


def _queue(
    service: Service, tmp_path: Path, files: list[tuple[str, bytes]], *, numbered: bool = True
) -> list[str]:
    """A job queued straight in SQL (no task sent): the ids of its files."""
    with service.runtime.session_factory() as session:
        job = create_job(session, tenant_id=service.tenant_id)
        rows = []
        for position, (path, data) in enumerate(files):
            staged = stage_stream(
                io.BytesIO(data), tmp_path / f"{job.id}-{position}", max_bytes=1 << 20
            )
            row = add_job_file(session, job=job, position=position, path=path,
                               staged_path=str(staged.staged_path),
                               size_bytes=staged.size_bytes, sha256=staged.sha256)  # fmt: skip
            rows.append(row)
        if numbered:
            number_versions(session, rows)
        session.commit()
        return [row.id for row in rows]


def _deps(service: Service) -> IngestDependencies:
    runtime = service.runtime
    return IngestDependencies(
        session_factory=runtime.session_factory,
        store=runtime.store,
        embedder=runtime.binding.embedder,
        chunking=runtime.settings.ingest.chunking,
        originals=originals_for(runtime.settings),
    )


def _original(service: Service, document_id: str) -> bytes:
    folder = service.runtime.settings.originals_dir / service.tenant_id / document_id
    assert len(list(folder.iterdir())) == 1, document_id
    response = service.client.get(f"/v1/documents/{document_id}/file", headers=auth(service.key))
    assert response.status_code == 200, response.text
    return response.content


def _error(service: Service, file_id: str) -> str:
    with service.runtime.session_factory() as session:
        row = session.get(JobFile, file_id)
        assert row is not None
        return row.error or ""


def test_a_batch_holding_two_versions_of_a_path_keeps_the_newest(
    service: Service, tmp_path: Path
) -> None:
    """The API refuses it, but a batch must be safe anyway: before, each version's cleanup
    deleted the other's points and the document was listed with none stored."""
    older, newer = b"# Same\n\nolder apples", b"# Same\n\nnewer pears"
    file_ids = _queue(service, tmp_path, [("dup/same.md", older), ("dup/same.md", newer)])
    states = process_job_files(file_ids, _deps(service))
    assert states == {file_ids[0]: FileState.SKIPPED, file_ids[1]: FileState.DONE}
    assert _error(service, file_ids[0]).startswith("superseded")
    document = _listed(service)["dup/same.md"]
    assert document["version_sha256"] == hashlib.sha256(newer).hexdigest()
    texts = _texts(service, document["id"])
    assert texts
    assert all("pears" in text and "apples" not in text for text in texts)
    assert _original(service, document["id"]) == newer
    assert not reconcile_drift(service)


def test_a_retried_older_version_is_superseded_and_an_unnumbered_file_is_numbered_at_claim(
    service: Service, tmp_path: Path
) -> None:
    """A task retried (or redelivered) after a newer version of its path was stored changes
    nothing; a file queued before write sequences existed counts as accepted when claimed."""
    (first,) = _queue(service, tmp_path, [("r/doc.md", b"first version")])
    (second,) = _queue(service, tmp_path, [("r/doc.md", b"second version")])
    assert process_job_files([second], _deps(service)) == {second: FileState.DONE}
    assert process_job_files([first], _deps(service), reclaim=True) == {first: FileState.SKIPPED}
    assert _error(service, first).startswith("superseded")
    assert _texts(service, _listed(service)["r/doc.md"]["id"]) == ["second version"]
    (legacy,) = _queue(service, tmp_path, [("r/doc.md", b"third version")], numbered=False)
    assert process_job_files([legacy], _deps(service)) == {legacy: FileState.DONE}
    assert _texts(service, _listed(service)["r/doc.md"]["id"]) == ["third version"]
    assert not reconcile_drift(service)


def test_unchanged_is_believed_only_when_the_store_holds_the_version(service: Service) -> None:
    content = b"# Kept\n\nThe store must really hold this."
    wait_for_job(service.client, _start(service, [("keep/me.md", content)]), service.key)
    document = _listed(service)["keep/me.md"]
    # The points are lost behind the row's back (a crash, a restore of an older snapshot).
    service.runtime.store.delete_document(tenant_id=service.tenant_id, document_id=document["id"])
    job = wait_for_job(service.client, _start(service, [("keep/me.md", content)]), service.key)
    assert files_by_path(job)["keep/me.md"]["state"] == "done"
    stored = service.runtime.store.count(tenant_id=service.tenant_id, document_id=document["id"])
    assert stored == document["chunk_count"] == 1
    # And now that it does, the same bytes are skipped.
    job = wait_for_job(service.client, _start(service, [("keep/me.md", content)]), service.key)
    assert files_by_path(job)["keep/me.md"]["state"] == "skipped"


def test_an_older_version_finishing_last_does_not_win(service: Service) -> None:
    """Job A (a slow batch) carries "100", job B 0.3 s later "999": the document ends at 999
    (before, whichever worker finished last won, and that was A)."""
    # Before the fix, A finished last and won with one 900-word filler (as with three).
    job_a = _start(service, [("race/budget.txt", b"Budget: 100"), *_filler("race", 1)])
    time.sleep(0.3)
    job_b = _start(service, [("race/budget.txt", b"Budget: 999")])
    done_a = wait_for_job(service.client, job_a, service.key)
    done_b = wait_for_job(service.client, job_b, service.key)
    assert files_by_path(done_b)["race/budget.txt"]["state"] == "done"
    assert files_by_path(done_a)["race/budget.txt"]["state"] in ("done", "skipped")
    document = _listed(service)["race/budget.txt"]
    assert document["version_sha256"] == hashlib.sha256(b"Budget: 999").hexdigest()
    assert _texts(service, document["id"]) == ["Budget: 999"]
    assert _original(service, document["id"]) == b"Budget: 999"
    assert not reconcile_drift(service)


def test_a_delete_wins_over_an_upload_accepted_before_it(service: Service) -> None:
    wait_for_job(service.client, _start(service, [("gone/doc.md", b"version one")]), service.key)
    document_id = _listed(service)["gone/doc.md"]["id"]
    # A newer version in a slow batch, then a delete while it is still being embedded.
    pending = _start(service, [*_filler("gone", 1), ("gone/doc.md", b"version two")])
    deleted = service.client.delete(f"/v1/documents/{document_id}", headers=auth(service.key))
    assert deleted.status_code == 204, deleted.text
    job = wait_for_job(service.client, pending, service.key)
    file = files_by_path(job)["gone/doc.md"]
    assert file["state"] == "skipped"
    assert file["error"].startswith("superseded")
    assert "gone/doc.md" not in _listed(service)
    assert service.runtime.store.count(tenant_id=service.tenant_id, document_id=document_id) == 0
    assert not (service.runtime.settings.originals_dir / service.tenant_id / document_id).exists()
    # An upload accepted after the delete brings the document back.
    wait_for_job(service.client, _start(service, [("gone/doc.md", b"version three")]), service.key)
    assert _texts(service, _listed(service)["gone/doc.md"]["id"]) == ["version three"]
    assert not reconcile_drift(service)


def reconcile_drift(service: Service) -> bool:
    with service.runtime.session_factory() as session:
        report = reconcile(session, service.runtime.store, fix=False)
    return report.drift


# The property test: random overlapping writers at a few paths, checked after each step.
PATHS = ("p/alpha.md", "p/beta.md", "q/gamma.txt")
STEPS = 6


@dataclass
class _Model:
    """The newest accepted content of each path (None: deleted), in the client's order."""

    contents: dict[str, bytes | None]
    tokens: dict[str, str]
    counter: int = 0

    def new_version(self, path: str, rng: random.Random) -> tuple[bytes, str]:
        self.counter += 1
        token = f"zqv{self.counter}x"
        # 1 to 4 chunks: versions of one path differ in chunk count, so a stale point shows.
        paragraphs = [
            f"Section {i} of {path} version {token}. " + " ".join([token] * 30)
            for i in range(rng.randint(1, 4))
        ]
        return "\n\n".join([f"# {path}", *paragraphs]).encode(), token


def test_concurrent_writers_converge_on_the_newest_accepted_version(service: Service) -> None:
    rng = random.Random(15_1)
    model = _Model(contents={}, tokens={})
    folder_jobs = 0
    for step in range(STEPS):
        jobs: list[str] = []
        for _ in range(rng.randint(2, 4)):
            kind = rng.choice(["upload", "upload", "slow", "reupload", "folder", "delete"])
            paths = rng.sample(PATHS, rng.randint(1, 2))
            if kind in ("upload", "slow", "folder"):
                versions = {p: model.new_version(p, rng) for p in paths}
                files = [(p, data) for p, (data, _) in versions.items()]
                if kind == "folder":
                    folder_jobs += 1
                    root = service.share / f"f{folder_jobs}"
                    for path, data in files:
                        (root / path).parent.mkdir(parents=True, exist_ok=True)
                        (root / path).write_bytes(data)
                    response = service.client.post(
                        "/v1/ingest/jobs", headers=auth(service.key), json={"path": str(root)}
                    )
                else:
                    if kind == "slow":
                        files = [*_filler(f"s{step}", rng.randint(1, 2), words=300), *files]
                    response = _post_files(service, files)
                assert response.status_code == 202, response.text
                jobs.append(response.json()["id"])
                for path, (data, token) in versions.items():
                    model.contents[path], model.tokens[path] = data, token
                for path, data in files:
                    if path.startswith("filler/"):
                        model.contents[path] = data
            elif kind == "reupload":
                again = [(p, c) for p in paths if (c := model.contents.get(p)) is not None]
                if again:
                    jobs.append(_start(service, again))
            else:
                document_id = document_id_for(service.tenant_id, paths[0])
                response = service.client.delete(
                    f"/v1/documents/{document_id}", headers=auth(service.key)
                )
                assert response.status_code in (204, 404), response.text
                if response.status_code == 204:
                    model.contents[paths[0]] = None
        for job_id in jobs:
            job = wait_for_job(service.client, job_id, service.key)
            assert job["progress"]["failed"] == 0, job
        _check(service, model, step)


def _check(service: Service, model: _Model, step: int) -> None:
    listed = _listed(service)
    expected = {p: hashlib.sha256(c).hexdigest() for p, c in model.contents.items() if c}
    assert {p: d["version_sha256"] for p, d in listed.items()} == expected, f"step {step}"
    store, tenant = service.runtime.store, service.tenant_id
    for path, document in listed.items():
        document_id = document["id"]
        version_points = store.count(
            tenant_id=tenant, document_id=document_id, version=document["version_sha256"]
        )
        all_points = store.count(tenant_id=tenant, document_id=document_id)
        assert version_points == all_points == document["chunk_count"] > 0, (step, path)
        # The kept original is the newest version's bytes, and the only file kept for it.
        assert _original(service, document_id) == model.contents[path], (step, path)
        if path in model.tokens:
            points, _ = store.scroll(tenant_id=tenant, document_id=document_id, limit=100)
            assert {p.payload[VERSION_FIELD] for p in points} == {document["version_sha256"]}
            assert all(model.tokens[path] in str(p.payload["text"]) for p in points), (step, path)
            hits = service.client.post(
                "/v1/search",
                headers=auth(service.key),
                json={"query": model.tokens[path], "mode": "lexical", "rerank": False},
            )
            assert hits.status_code == 200, hits.text
            assert hits.json()["hits"][0]["path"] == path, (step, path)
    for path in PATHS:
        if model.contents.get(path) is None:
            gone = document_id_for(tenant, path)
            assert store.count(tenant_id=tenant, document_id=gone) == 0, (step, path)
            assert not (service.runtime.settings.originals_dir / tenant / gone).exists()
    assert not reconcile_drift(service), f"step {step}"


def test_tombstones_are_pruned_once_no_accepted_upload_can_outlive_them(service: Service) -> None:
    """A tombstone stays while a file numbered below it may still apply (queued, running, or
    failed with its bytes kept for a retry) and for an hour after its delete; then it goes."""
    from datetime import timedelta

    from sqlalchemy import select

    from core.models import DocumentTombstone, utcnow
    from ingest.versions import TOMBSTONE_SETTLE, prune_tombstones

    def tombstones() -> list[int]:
        with service.runtime.session_factory() as session:
            rows = session.scalars(
                select(DocumentTombstone.sequence).where(
                    DocumentTombstone.tenant_id == service.tenant_id
                )
            )
            return sorted(rows)

    def prune() -> int:
        with service.runtime.session_factory() as session:
            pruned = prune_tombstones(session, tenant_id=service.tenant_id)
            session.commit()
        return pruned

    settled = utcnow() - TOMBSTONE_SETTLE - timedelta(minutes=1)
    with service.runtime.session_factory() as session:
        for number, (sequence, deleted_at) in enumerate(
            [(10, settled), (30, settled), (40, utcnow())]
        ):
            session.add(
                DocumentTombstone(
                    document_id=f"tomb-{number}", tenant_id=service.tenant_id,
                    sequence=sequence, deleted_at=deleted_at,
                )
            )  # fmt: skip
        job = create_job(session, tenant_id=service.tenant_id)
        waiting = add_job_file(session, job=job, position=0, path="late.md")
        waiting.sequence = 20  # accepted before the deletes numbered 30 and 40, not yet applied
        session.commit()
        waiting_id = waiting.id
    assert prune() == 1
    assert tombstones() == [30, 40]
    with service.runtime.session_factory() as session:
        file = session.get(JobFile, waiting_id)
        assert file is not None
        file.state = FileState.FAILED
        file.staged_path = "/kept/for/a/retry"
        session.commit()
    assert prune() == 0  # a retry of the failed file may still apply it
    assert tombstones() == [30, 40]
    with service.runtime.session_factory() as session:
        file = session.get(JobFile, waiting_id)
        assert file is not None
        file.staged_path = None  # its kept bytes expired: it can never be applied
        session.commit()
    assert prune() == 1
    assert tombstones() == [40]  # the young one stays whatever the files say
