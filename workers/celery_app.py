"""Celery app factory: JSON only, late acks, one task per file; no business logic here."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery
from sqlalchemy.exc import OperationalError

from core.settings import Settings
from ingest.pipeline import IngestDependencies, fail_job_file, process_job_file

logger = logging.getLogger(__name__)

INGEST_FILE_TASK = "ragkb.ingest_file"
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


def create_celery_app(
    settings: Settings, *, ingest_dependencies: Callable[[], IngestDependencies]
) -> Celery:
    """A Celery app whose ingest task gets its dependencies from the given provider."""
    broker_url, transport_options = broker_options(settings)
    app = Celery("ragkb", broker=broker_url, set_as_current=False)
    app.conf.update(
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
        task_default_queue="ragkb.ingest",
    )

    @app.task(  # type: ignore[untyped-decorator]
        name=INGEST_FILE_TASK,
        # Per-app, not shared: each app's task closes over its own dependencies.
        shared=False,
        bind=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=2,
        retry_backoff_max=60,
        max_retries=5,
    )
    def ingest_file(self: object, file_id: str) -> str:
        deps = ingest_dependencies()
        try:
            return process_job_file(file_id, deps).value
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            logger.exception("ingest of job file %s failed", file_id)
            fail_job_file(file_id, deps, reason=f"internal error ({type(exc).__name__})")
            return "failed"

    return app


def enqueue_ingest(app: Celery, file_ids: list[str]) -> None:
    for file_id in file_ids:
        app.send_task(INGEST_FILE_TASK, args=[file_id])
