"""Audit events of the read path, written off the request by one thread, in batches.

A search must leave an audit row, but committing that row (an fsync on SQLite, a round trip on
PostgreSQL) need not hold up the answer. Requests hand their event to a bounded queue; a thread
writes what has gathered in one transaction. No event is dropped: when the queue is full the
request writes its own event (`write_now`) as before; a failed batch is logged and retried until it
is written; `close` writes what is left. An event the database can never take (a constraint
refuses it), or one still unwritten when the process stops, is logged as an error.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import asdict

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.audit import PendingEvent
from core.models import AuditEvent

logger = logging.getLogger(__name__)

_MAX_RETRY_S = 30.0


class AuditWriter:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        queue_size: int,
        batch_size: int,
        gather_s: float = 0.0,
        retry_s: float = 1.0,
    ) -> None:
        self._session_factory = session_factory
        self._queue: queue.Queue[PendingEvent] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._gather_s = gather_s
        self._retry_s = retry_s
        self._write_soon = threading.Event()  # cuts the gathering short (flush, close)
        self._state = threading.Condition()
        self._submitted = 0
        self._done = 0  # written, or given up on at close (and logged)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def submit(self, event: PendingEvent) -> bool:
        """Queue the event; False when the queue is full (or closed): write it yourself."""
        with self._state:
            if self._stopping.is_set():
                return False
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                return False
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ragkb-audit-writer", daemon=True
                )
                self._thread.start()
        return True

    def write_now(self, event: PendingEvent) -> None:
        """Write one event on the caller's thread; a database error reaches the caller."""
        self._insert([event])

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every event submitted so far is written (an audit read sees its own
        process's events); False if that took longer than `timeout_s`."""
        with self._state:
            target = self._submitted
            self._write_soon.set()
            return self._state.wait_for(lambda: self._done >= target, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and stop the thread."""
        with self._state:
            self._stopping.set()
            self._write_soon.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        leftover = self._take_batch(block=False, limit=self._queue.qsize())
        if leftover:
            self._write(leftover, retry=False)
            self._mark_done(len(leftover))

    def _run(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            batch = self._take_batch(block=True, limit=1)
            if batch:
                # Gather a while: one transaction for many events, and the write does not
                # compete (for the GIL and the cores) with the request that queued the event.
                self._write_soon.wait(self._gather_s)
                self._write_soon.clear()
                batch += self._take_batch(block=False, limit=self._batch_size - 1)
                self._write(batch, retry=True)
                self._mark_done(len(batch))

    def _take_batch(self, *, block: bool, limit: int) -> list[PendingEvent]:
        batch: list[PendingEvent] = []
        try:
            if block:
                # Wakes now and then, so a stop is noticed even when nothing arrives.
                batch.append(self._queue.get(timeout=0.2))
            while len(batch) < limit:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _write(self, batch: list[PendingEvent], *, retry: bool) -> None:
        delay = self._retry_s
        while True:
            try:
                self._insert(batch)
                return
            except IntegrityError as exc:
                # Not a passing outage: an event that can never be written (its tenant is gone)
                # must not hold up the others. They are written one by one; it is logged.
                if len(batch) > 1:
                    for one in batch:
                        self._write([one], retry=retry)
                    return
                logger.error("audit event %s refused by the database: %s", batch[0], exc)
                return
            except SQLAlchemyError as exc:
                if not retry or self._stopping.is_set():
                    logger.error("%d audit events could not be written: %s", len(batch), exc)
                    return
                logger.warning(
                    "writing %d audit events failed, retrying in %.0fs: %s", len(batch), delay, exc
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, _MAX_RETRY_S)

    def _insert(self, events: list[PendingEvent]) -> None:
        # A Core insert of many rows: a fraction of the ORM's per-object work.
        with self._session_factory() as session:
            session.execute(insert(AuditEvent), [asdict(e) for e in events])
            session.commit()

    def _mark_done(self, count: int) -> None:
        with self._state:
            self._done += count
            self._state.notify_all()
