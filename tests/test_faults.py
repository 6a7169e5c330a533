"""Fault tests with real processes: the service killed with SIGKILL in the middle of a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.db import create_db_engine, create_session_factory
from core.lexical import LexicalEncoder
from core.settings import Settings
from core.tenancy import get_tenant_by_name
from core.vectorstore.edge import EdgeVectorStore
from core.vectorstore.factory import collection_name
from tests.apihelpers import auth
from tests.services import create_database, free_port

pytestmark = pytest.mark.e2e
RAGKB = str(Path(sys.executable).with_name("ragkb"))
FILES = 200


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen([RAGKB, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{env['RAGKB_API_PORT']}/readyz", timeout=2).is_success:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("ragkb serve did not become ready")


def test_kill_9_mid_job_then_restart_completes_with_exact_points(
    tmp_path: Path,
    database_kind: str,
    broker_url: str | None,
    request: pytest.FixtureRequest,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "RAGKB_DATA_DIR": str(tmp_path / "data"),
        "RAGKB_API_PORT": str(port),
        "RAGKB_READER__MANAGED": "false",
        "RAGKB_WORKER__CONCURRENCY": "2",
    }
    if database_kind == "postgresql":
        env["RAGKB_DATABASE_URL"] = create_database(
            request.getfixturevalue("postgres_url"), "kill9"
        )
    if broker_url is not None:
        env["RAGKB_BROKER_URL"] = broker_url
    subprocess.run([RAGKB, "tenant", "create", "acme"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [RAGKB, "key", "create", "--tenant", "acme"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"

    process = _start(env, log)
    files = [
        ("files", (f"notes/n{i:03d}.md", f"# Note {i}\n\nFact {i}: the value is {i * 13}.\n"))
        for i in range(FILES)
    ]
    job_id = httpx.post(
        f"{url}/v1/ingest/jobs", headers=auth(key), files=files, timeout=120
    ).json()["id"]
    while True:
        progress = httpx.get(f"{url}/v1/ingest/jobs/{job_id}", headers=auth(key)).json()["progress"]
        if progress["done"] >= 10:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert progress["done"] < FILES, "the job finished before the kill: nothing was tested"

    process = _start(env, log)
    try:
        deadline = time.monotonic() + 300
        while True:
            job = httpx.get(f"{url}/v1/ingest/jobs/{job_id}", headers=auth(key)).json()
            if job["status"].startswith("completed"):
                break
            assert time.monotonic() < deadline, job["progress"]
            time.sleep(0.5)
        assert job["progress"]["done"] == FILES, job["progress"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    # Exactly what a clean run produces: one chunk per file, no duplicates, none missing.
    settings = Settings(data_dir=tmp_path / "data")
    store = EdgeVectorStore(
        path=settings.vector_store_path / collection_name(settings, "all-MiniLM-L6-v2"),
        dimension=384,
        lexical=LexicalEncoder(settings.retrieval.lexical),
    )
    assert len({f["document_id"] for f in job["files"]}) == FILES
    db_settings = Settings(data_dir=tmp_path / "data", database_url=env.get("RAGKB_DATABASE_URL"))
    engine = create_db_engine(db_settings)
    with create_session_factory(engine)() as session:
        tenant_id = get_tenant_by_name(session, name="acme").id
    engine.dispose()
    assert store.count(tenant_id=tenant_id) == FILES
    store.close()
