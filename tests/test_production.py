"""Production mode against real servers: PostgreSQL and Redis on loopback, settings that fail
closed, `ragkb check`, and outages that must not hang or lose work."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import create_tenant, get_tenant_by_name, issue_api_key
from tests.apihelpers import auth, wait_for_job
from tests.services import RedisServer, create_database, postgres_server

GOOD_PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql+psycopg://ragkb:s3cret-pw@db:5432/ragkb",
    "broker_url": "redis://redis:6379/0",
    "vector_store": {"kind": "qdrant", "url": "http://qdrant:6333", "api_key": "qdrant-key-123"},
    "reader": {"managed": False, "api_key": "vllm-key-456", "base_url": "http://vllm:8000/v1"},
}


def test_production_settings_accept_a_complete_configuration() -> None:
    assert Settings(**GOOD_PRODUCTION).environment == "production"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"database_url": None}, "RAGKB_DATABASE_URL"),
        ({"database_url": "sqlite:///x.db"}, "not SQLite"),
        ({"database_url": "postgresql+psycopg://u:changeme@db/ragkb"}, "placeholder password"),
        ({"vector_store": {"kind": "embedded"}}, "RAGKB_VECTOR_STORE__KIND"),
        ({"vector_store": {"kind": "qdrant", "url": "http://q:6333"}}, "VECTOR_STORE__API_KEY"),
        ({"reader": {"managed": False}}, "RAGKB_READER__API_KEY"),
        ({"reader": {"managed": True, "api_key": "k-1"}}, "MANAGED"),
        ({"broker_url": None}, "RAGKB_BROKER_URL"),
    ],
)
def test_production_settings_fail_closed(override: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**{**GOOD_PRODUCTION, **override})


def test_check_command_reports_each_dependency(tmp_path: Path, postgres_url: str) -> None:
    env = {
        "PATH": str(Path(sys.executable).parent),
        "HF_HUB_OFFLINE": "1",
        "RAGKB_DATA_DIR": str(tmp_path),
        "RAGKB_DATABASE_URL": postgres_url,
        "RAGKB_READER__BASE_URL": "http://127.0.0.1:9/v1",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ragkb")), "check"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1  # the reader is down
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.strip()}
    assert lines["database"].startswith("ok")
    assert "postgresql+psycopg://postgres@127.0.0.1" in lines["database"]
    assert lines["broker"].startswith("ok")
    assert lines["reader"].startswith("FAIL")


@pytest.fixture
def redis_runtime(
    tmp_path: Path,
    redis_server: RedisServer,
    database_url: str | None,
    embedder: LocalEmbedder,
) -> Iterator[tuple[TestClient, Runtime, str]]:
    """The app with Celery on a real Redis broker (worker threads consume from Redis)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=redis_server.url,
    )
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    with runtime.session_factory() as session:
        key = issue_api_key(session, tenant=create_tenant(session, name="acme")).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield client, runtime, key
    finally:
        runtime.close()


def _upload(client: TestClient, key: str, count: int, prefix: str) -> str:
    files = [
        ("files", (f"{prefix}/doc{i:03d}.md", f"# Note {i}\n\nFact number {i} is {i * 7}.\n"))
        for i in range(count)
    ]
    response = client.post("/v1/ingest/jobs", headers=auth(key), files=files)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_ingest_through_a_redis_broker(redis_runtime: tuple[TestClient, Runtime, str]) -> None:
    client, _runtime, key = redis_runtime
    job = wait_for_job(client, _upload(client, key, 5, "redis"), key)
    assert job["progress"]["done"] == 5


def test_redis_restarted_in_the_middle_of_a_job(
    redis_runtime: tuple[TestClient, Runtime, str], redis_server: RedisServer
) -> None:
    client, runtime, key = redis_runtime
    job_id = _upload(client, key, 40, "restart")
    time.sleep(1.0)
    redis_server.restart(down_for_s=3.0)
    job = wait_for_job(client, job_id, key, timeout_s=300)
    assert job["progress"]["done"] == 40, job["progress"]
    with runtime.session_factory() as session:
        tenant_id = get_tenant_by_name(session, name="acme").id
    # Exactly one chunk per file: nothing lost, nothing duplicated by redelivery.
    assert runtime.store.count(tenant_id=tenant_id) == 40


def test_database_outage_is_503_not_a_hang(tmp_path: Path, embedder: LocalEmbedder) -> None:
    with postgres_server() as server:
        settings = Settings(
            data_dir=tmp_path / "data", database_url=create_database(server.url, "outage")
        )
        run_migrations(settings)
        runtime = Runtime.build(settings, embedder=embedder)
        with runtime.session_factory() as session:
            key = issue_api_key(session, tenant=create_tenant(session, name="acme")).plaintext
            session.commit()
        try:
            with TestClient(create_app(settings, runtime)) as client:
                assert client.get("/v1/documents", headers=auth(key)).status_code == 200
                server.stop()  # under the running app
                started = time.monotonic()
                response = client.get("/v1/documents", headers=auth(key))
                assert response.status_code == 503
                assert "database unavailable" in response.json()["detail"]
                assert time.monotonic() - started < 15
                ready = client.get("/readyz")
                assert ready.status_code == 503
        finally:
            runtime.close()


def test_migrations_on_postgresql_match_the_models(postgres_url: str) -> None:
    """Migrations run on PostgreSQL and leave the schema the models describe."""
    url = create_database(postgres_url, "schema_check")
    settings = Settings(database_url=url)
    run_migrations(settings)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from core.models import Base

    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
