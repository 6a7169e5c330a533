"""A runtime's background threads: started once, stopped by `close`."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings


def _watchers() -> int:
    return sum(t.name == "ragkb-index-watcher" and t.is_alive() for t in threading.enumerate())


def test_a_second_app_over_the_same_runtime_starts_nothing_more(
    settings: Settings, embedder: LocalEmbedder
) -> None:
    run_migrations(settings)
    before = _watchers()
    runtime = Runtime.build(settings, embedder=embedder)
    try:
        for _ in range(2):
            with TestClient(create_app(settings, runtime)) as client:
                assert client.get("/healthz").status_code == 200
        assert _watchers() == before + 1
    finally:
        runtime.close()
    assert _watchers() == before
