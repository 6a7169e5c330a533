"""Celery app factory: JSON only, late acks, one task per batch of files; no business logic here."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import kombu
from celery import Celery
from sqlalchemy.exc import OperationalError

from core.settings import Settings
from ingest.pipeline import (
    IngestDependencies,
    fail_job_files,
    process_job_files,
    release_after_transient_fault,
)
from workers.folder_broker import TRANSPORT_PATH as FOLDER_TRANSPORT

logger = logging.getLogger(__name__)
_Queue: Any = kombu.Queue  # type: ignore[attr-defined]  # kombu ships no type hints

INGEST_FILES_TASK = "ragkb.ingest_files"
# The single-file task of earlier releases: kept so that messages queued before an upgrade run.
INGEST_FILE_TASK = "ragkb.ingest_file"
LEGACY_QUEUE = "ragkb.ingest"
# Faults worth retrying: the database or the vector store did not answer. Bad input never is.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, ConnectionError, TimeoutError)


def broker_options(settings: Settings) -> tuple[str, dict[str, object]]:
    """The broker URL and transport options: Redis in production, a folder by default."""
    if settings.broker_url:
        return settings.broker_url, {}
    queue_dir = settings.broker_folder / "queue"
    processed_dir = settings.broker_folder / "processed"
    control_dir = settings.broker_folder / "control"
    for folder in (queue_dir, processed_dir, control_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "processed_folder": str(processed_dir),
        "control_folder": str(control_dir),
        "store_processed": False,
        "polling_interval": 0.2,
    }


def broker_transport(settings: Settings) -> str | None:
    """The transport class for the folder broker; None: the one the broker URL names."""
    return None if settings.broker_url else FOLDER_TRANSPORT


def shard_queue(tenant_id: str, shards: int) -> str:
    """The queue of a tenant's files. Workers take from every shard queue in turn, so a tenant
    with a huge job delays only the tenants that hash to the same shard."""
    return f"ragkb.ingest.{zlib.crc32(tenant_id.encode()) % shards}"


def create_celery_app(
    settings: Settings, *, ingest_dependencies: Callable[[], IngestDependencies]
) -> Celery:
    """A Celery app whose ingest task gets its dependencies from the given provider."""
    broker_url, transport_options = broker_options(settings)
    app = Celery("ragkb", broker=broker_url, set_as_current=False)
    shards = settings.worker.queue_shards
    app.conf.update(
        broker_transport=broker_transport(settings),
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        task_default_queue=LEGACY_QUEUE,
        task_queues=[_Queue(LEGACY_QUEUE)] + [_Queue(f"ragkb.ingest.{i}") for i in range(shards)],
        ragkb_queue_shards=shards,
        ragkb_files_per_task=settings.ingest.files_per_task,
    )

    @app.task(  # type: ignore[untyped-decorator]
        name=INGEST_FILES_TASK,
        # Per-app, not shared: each app's task closes over its own dependencies.
        shared=False,
        bind=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=2,
        retry_backoff_max=60,
        max_retries=8,
    )
    def ingest_files(self: Any, file_ids: list[str]) -> dict[str, str]:
        deps = ingest_dependencies()
        try:
            # A retry runs after this task's earlier attempt ended on a transient fault: the
            # files it had claimed are still `running`, and only this task carries them.
            states = process_job_files(file_ids, deps, reclaim=self.request.retries > 0)
        except TRANSIENT_ERRORS as exc:
            logger.warning("transient fault on %d files; retrying: %s", len(file_ids), exc)
            release_after_transient_fault(file_ids, deps)
            raise
        except Exception as exc:
            logger.exception("ingest of job files %s failed", file_ids)
            reason = f"internal error ({type(exc).__name__}: {str(exc)[:200]})"
            fail_job_files(file_ids, deps, reason=reason)
            return {}
        return {file_id: state.value for file_id, state in states.items()}

    @app.task(name=INGEST_FILE_TASK, shared=False)  # type: ignore[untyped-decorator]
    def ingest_file(file_id: str) -> None:
        ingest_files.delay([file_id])

    return app


def enqueue_ingest(app: Celery, file_ids: Sequence[str], *, tenant_id: str) -> None:
    """Send a tenant's files in batches of `files_per_task` to the tenant's shard queue."""
    per_task = int(app.conf.ragkb_files_per_task)
    queue = shard_queue(tenant_id, int(app.conf.ragkb_queue_shards))
    for start in range(0, len(file_ids), per_task):
        app.send_task(
            INGEST_FILES_TASK, args=[list(file_ids[start : start + per_task])], queue=queue
        )
