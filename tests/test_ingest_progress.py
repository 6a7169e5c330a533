"""A file's state changes as it finishes, and a file that never finishes is given up on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from api.runtime import Runtime
from core.embedding import LocalEmbedder
from core.models import FileState, JobFile, utcnow
from core.settings import Settings
from core.tenancy import create_tenant
from ingest.elements import ParsedDocument
from ingest.jobs import add_job_file, create_job, get_job, job_progress, requeue_unfinished
from ingest.parse import parse_document
from ingest.pdf import OcrMode
from ingest.pipeline import process_job_files
from tests.apihelpers import migrated_runtime


@pytest.fixture
def runtime(settings: Settings, embedder: LocalEmbedder) -> Iterator[Runtime]:
    with migrated_runtime(settings, embedder) as built:
        yield built


def _job(runtime: Runtime, tmp_path: Path, files: dict[str, bytes]) -> tuple[str, str, list[str]]:
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="acme")
        job = create_job(session, tenant_id=tenant.id)
        ids = []
        for position, (path, data) in enumerate(files.items()):
            staged = tmp_path / f"{position:06d}"
            staged.write_bytes(data)
            ids.append(
                add_job_file(
                    session, job=job, position=position, path=path, staged_path=str(staged),
                    size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                ).id
            )  # fmt: skip
        session.commit()
        return tenant.id, job.id, ids


def test_each_file_changes_state_as_it_finishes(runtime: Runtime, tmp_path: Path) -> None:
    """Was: a 0-byte file of a 16-file batch reported failed after 834 s, when the batch ended."""
    files = {
        "empty.txt": b"",
        "a.md": b"# A\n\nAlpha.\n",
        "big.txt": b"Bulk text. " * 30_000,  # 330 KB: parsed files are stored before it
        "b.md": b"# B\n\nBeta.\n",
    }
    tenant_id, job_id, ids = _job(runtime, tmp_path, files)
    seen: dict[str, dict[str, tuple[str, ...]]] = {}

    def parse_and_look(path: str, data: bytes, *, ocr: OcrMode = "auto") -> ParsedDocument:
        # What a client polling the job sees while this file is being parsed.
        with runtime.session_factory() as session:
            job = get_job(session, tenant_id=tenant_id, job_id=job_id)
            assert job is not None
            states = {f.path: (FileState(f.state).value, f.error or "") for f in job.files}
            progress = job_progress(job)
        seen[path] = {**states, "progress": (str(progress.failed), str(progress.running))}
        return parse_document(path, data, ocr=ocr)

    deps = replace(runtime.binding.ingest, parse=parse_and_look)
    states = process_job_files(ids, deps)
    assert [states[i] for i in ids] == ["failed", "done", "done", "done"]
    # While a.md was parsed, the empty file had failed already, with its reason; b.md was
    # still queued (a file is claimed right before it is parsed, not with its whole batch).
    assert seen["a.md"]["empty.txt"] == ("failed", "the file is empty")
    assert seen["a.md"]["a.md"] == ("running", "")
    assert seen["a.md"]["b.md"] == ("queued", "")
    assert seen["a.md"]["progress"] == ("1", "1")
    # Before a large file is parsed, the files parsed so far are stored and shown done.
    assert seen["big.txt"]["a.md"] == ("done", "")
    assert seen["big.txt"]["b.md"] == ("queued", "")


def test_a_file_is_given_up_after_its_attempts(runtime: Runtime, tmp_path: Path) -> None:
    """Every restart re-queued a file whose parsing never ended; after `parse_attempts` it fails
    with its reason instead of being started again."""
    tenant_id, _job_id, ids = _job(runtime, tmp_path, {"stuck.md": b"# S\n\nStuck.\n"})
    deps = runtime.binding.ingest
    assert deps.parse_attempts == runtime.settings.ingest.parse_attempts == 3
    for _ in range(deps.parse_attempts):
        # A worker took the file and its process died mid-parse; the restart re-queued it.
        with runtime.session_factory() as session:
            session.execute(
                update(JobFile)
                .where(JobFile.id == ids[0])
                .values(state=FileState.RUNNING, attempts=JobFile.attempts + 1,
                        started_at=utcnow() - timedelta(hours=1))
            )  # fmt: skip
            requeue_unfinished(session)
            session.commit()
    assert process_job_files(ids, deps)[ids[0]] == "failed"
    with runtime.session_factory() as session:
        row = session.get(JobFile, ids[0])
        assert row is not None
        assert row.error is not None
        assert row.error.startswith("not finished after 3 attempts")
        assert row.attempts == 3
        assert row.staged_path is None
    assert runtime.store.count(tenant_id=tenant_id) == 0


def test_a_file_within_its_attempts_is_taken_and_counted(runtime: Runtime, tmp_path: Path) -> None:
    _, _, ids = _job(runtime, tmp_path, {"ok.md": b"# OK\n\nFine.\n"})
    with runtime.session_factory() as session:
        session.execute(update(JobFile).where(JobFile.id == ids[0]).values(attempts=2))
        session.commit()
    assert process_job_files(ids, runtime.binding.ingest)[ids[0]] == "done"
    with runtime.session_factory() as session:
        row = session.get(JobFile, ids[0])
        assert row is not None
        assert row.attempts == 3
        assert row.error is None


def test_a_mail_with_an_unreadable_attachment_is_done_and_says_so(
    runtime: Runtime, tmp_path: Path
) -> None:
    from tests.docgen import make_eml

    mail = make_eml("Rules", "Visitors sign in at reception.", {"junk.pdf": b"not a pdf"})
    tenant_id, _, ids = _job(runtime, tmp_path, {"m.eml": mail})
    assert process_job_files(ids, runtime.binding.ingest)[ids[0]] == "done"
    with runtime.session_factory() as session:
        row = session.get(JobFile, ids[0])
        assert row is not None
        assert row.error == (
            "attachment 'junk.pdf' not read: not a PDF file: the content does not start with %PDF"
        )
    points, _ = runtime.store.scroll(tenant_id=tenant_id)
    texts = [str(p.payload["text"]) for p in points]
    assert texts
    assert not any("not read" in t or "%PDF" in t for t in texts)
