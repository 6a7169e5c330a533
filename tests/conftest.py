"""Shared fixtures: real models, real stores, a real reader server — no mocks."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from core.embedding import SentenceTransformerEmbedder, create_embedder
from core.settings import EmbeddingSettings, ReaderSettings, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
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
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings in a fresh folder; the reader is not started by the app."""
    return Settings(
        data_dir=tmp_path / "data",
        reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1", max_retries=0),
    )
