"""Shared fixtures: real models, real stores, a real reader server — no mocks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from core.embedding import LocalEmbedder, create_embedder
from core.settings import EmbeddingSettings, ReaderSettings, Settings
from tests.e2e_service import Service, run_service
from tests.services import RedisServer, create_database, free_port, postgres_server

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="The database every test runs against (CI runs the suite once with each).",
    )
    parser.addoption(
        "--broker",
        choices=["folder", "redis"],
        default="folder",
        help="The Celery broker: the embedded default's folder, or a real Redis server.",
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for this test session."""
    with postgres_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def database_kind(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--db"))


@pytest.fixture
def database_url(database_kind: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh, empty database for one test: SQLite in its folder (None) or PostgreSQL."""
    if database_kind == "sqlite":
        return None
    server_url: str = request.getfixturevalue("postgres_url")
    return create_database(server_url, f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(scope="session")
def broker_url(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> str | None:
    """None for the folder broker, or the URL of this session's Redis server."""
    if pytestconfig.getoption("--broker") == "folder":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    model = create_embedder(EmbeddingSettings())
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def reader_model_file() -> Path:
    from generation.reader_model import assemble_reader_model

    return assemble_reader_model(Settings(data_dir=REPO_ROOT / "var").reader_model_file)


@pytest.fixture(scope="session")
def reader_url(reader_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp OpenAI-compatible server with the verified CPU reader model."""
    from generation.reader_server import ReaderServer

    base_url = f"http://127.0.0.1:{free_port()}/v1"
    server = ReaderServer(
        settings=ReaderSettings(base_url=base_url),
        model_file=reader_model_file,
        log_file=tmp_path_factory.mktemp("reader") / "reader.log",
    )
    with server:
        yield base_url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, broker_url: str | None) -> Settings:
    """Settings in a fresh folder for the chosen database and broker; no reader is started."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=broker_url,
        reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1", max_retries=0),
    )


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    reader_url: str,
    database_kind: str,
    broker_url: str | None,
    request: pytest.FixtureRequest,
) -> Iterator[Service]:
    """One `ragkb serve` (embedded store, the session's reader) for every end-to-end test of the
    session; tenants `acme` and `globex` (keys `key_a`, `key_b`), more with `new_tenant`."""
    database_url = None
    if database_kind == "postgresql":
        database_url = create_database(request.getfixturevalue("postgres_url"), "e2e")
    yield from run_service(tmp_path_factory.mktemp("service"), reader_url, database_url, broker_url)
