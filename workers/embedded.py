"""Celery worker threads inside the process that owns the embedded vector store.

qdrant-edge and qdrant-client local mode lock their folder to one process, so in the embedded
default the `ragkb serve` process consumes the broker itself. Production runs `ragkb worker`.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from celery.worker import WorkController

from core.encoder_queue import lower_thread_priority


class EmbeddedWorker:
    def __init__(self, app: Celery, *, concurrency: int, nice: int = 0) -> None:
        """`nice`: added to the worker threads' CPU niceness (EmbeddingSettings.ingest_nice):
        they share the process with the questions, and the threads and parse processes they
        start inherit it (Linux keeps niceness per thread)."""
        self._app = app
        self._concurrency = concurrency
        self._nice = nice
        self._controller: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        # The thread pool's tracer resolves task names through the current app, which Celery
        # keeps per thread, falling back to the process default: pool threads need the default.
        self._app.set_default()
        self._app.set_current()
        self._controller = WorkController(
            app=self._app,
            pool="threads",
            concurrency=self._concurrency,
            hostname=f"embedded@{threading.get_native_id()}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        controller, nice = self._controller, self._nice

        def run() -> None:
            if nice:
                lower_thread_priority(nice)
            controller.start()

        self._thread = threading.Thread(target=run, name="ragkb-embedded-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._controller is None or self._thread is None:
            return
        self._controller.stop(in_sighandler=False, exitcode=0)
        self._thread.join(timeout_s)
        self._controller = None
        self._thread = None
