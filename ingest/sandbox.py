"""Parsing in child processes with a wall-clock and a memory limit per file.

A parser library can take hours or gigabytes on one unlucky file (unstructured's text heuristics
took 114 s and 1.1 GB on 100 KB). In the embedded default the workers are threads of `ragkb serve`,
the process that answers queries and owns the vector store: no parser may run there. Each file is
parsed in a child process whose address space is capped (RLIMIT_AS) and which is killed when the
file's time is up; the file then fails with its reason and the worker goes on.

Children are started by a fork server that has already imported the parsers (a new child costs
milliseconds, not the seconds of importing unstructured) and are reused for
`FILES_PER_CHILD` files, so many small files do not pay for a process each. A child that hit its
memory limit, crashed or was killed is replaced.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from core.settings import Settings
from ingest.elements import ParsedDocument, ParseError
from ingest.pdf import OcrMode

logger = logging.getLogger(__name__)

FILES_PER_CHILD = 100
# Modules the fork server imports once, so that children start with them loaded.
_PRELOAD = [
    "ingest.parse",
    "ingest.heuristics",
    "charset_normalizer",
    "pypdf",
    "openpyxl",
    "unstructured.partition.text",
    "unstructured.partition.html",
    "unstructured.partition.docx",
    "unstructured.partition.pptx",
]


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float
    memory_mb: int


class ParseTimeoutError(ParseError):
    """The file took longer than the per-file limit to parse (the child was killed)."""


class ParserPool:
    """`parse(path, data)` like `parse_document`, in a limited child process. Thread-safe: each
    calling thread gets a child of its own for the call."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self._context = _context()
        self._lock = threading.Lock()
        self._closed = False

    def parse(self, path: str, data: bytes, *, ocr: OcrMode = "auto") -> ParsedDocument:
        """The parsed document; ParseError with the reason (including a limit that was hit)."""
        child = self._take()
        keep = False
        try:
            kind, value = child.call((path, data, ocr), timeout_s=self.limits.timeout_s)
            keep = kind in ("ok", "failed") and child.files < FILES_PER_CHILD
        finally:
            if keep and not self._closed:
                self._idle.put(child)
            else:
                child.stop()
        if kind == "ok":
            assert isinstance(value, ParsedDocument)
            return value
        raise self._error(kind, str(value), child.exitcode)

    def _error(self, kind: str, detail: str, exitcode: int | None) -> ParseError:
        limits = self.limits
        if kind == "timeout":
            return ParseTimeoutError(f"took longer than {limits.timeout_s:g} s to parse")
        if kind == "memory":
            return ParseError(f"needs more than the {limits.memory_mb} MiB memory limit to parse")
        if kind == "crashed":
            # Killed by a signal: most often the kernel refusing memory past the limit.
            return ParseError(
                f"the parser crashed on this file (exit code {exitcode}; memory limit "
                f"{limits.memory_mb} MiB)"
            )
        if kind == "internal":
            return ParseError(f"the file could not be parsed: {detail}")
        return ParseError(detail)

    def _take(self) -> _Child:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            with self._lock:  # the fork server starts once, for the first caller
                return _Child(self._context, self.limits.memory_mb)

    def close(self) -> None:
        """Stop the idle children (calls in progress finish and stop theirs)."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return


class _Child:
    def __init__(self, context: BaseContext, memory_mb: int) -> None:
        parent, child = context.Pipe()
        process: Any = context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child, memory_mb * 1024 * 1024), daemon=True,
            name="ragkb-parser",
        )  # fmt: skip
        process.start()
        child.close()
        self._process = process
        self._connection: Connection = parent
        self.files = 0

    @property
    def exitcode(self) -> int | None:
        code = self._process.exitcode
        return int(code) if code is not None else None

    def call(self, request: tuple[str, bytes, str], *, timeout_s: float) -> tuple[str, object]:
        self.files += 1
        try:
            self._connection.send(request)
            if not self._connection.poll(timeout_s):
                self.stop()
                return "timeout", ""
            kind, value = self._connection.recv()
            return str(kind), value
        except (EOFError, OSError):  # the child died mid-call (killed, out of memory, crashed)
            self._process.join(5)
            return "crashed", ""

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._connection.close()


def _context() -> BaseContext:
    # fork() of a process with threads (the server, Celery's pool, torch) can deadlock the child
    # on a lock some other thread held; the fork server is a clean single-threaded process.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _serve(connection: Connection, memory_bytes: int) -> None:
    """The child's loop: parse each (path, data) received, answer (kind, value)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from ingest.parse import parse_document

    while True:
        try:
            path, data, ocr = connection.recv()
        except (EOFError, OSError):
            return
        reply: tuple[str, object]
        try:
            reply = ("ok", parse_document(path, data, ocr=ocr))
        except ParseError as exc:
            reply = ("failed", str(exc))
        except MemoryError:
            reply = ("memory", "")
        except RecursionError:
            reply = ("failed", "the file is nested too deeply to parse (over the recursion limit)")
        except Exception as exc:  # a parser bug: the reason still names it
            reply = ("internal", f"{type(exc).__name__}: {str(exc)[:300]}")
        del data
        try:
            connection.send(reply)
        except MemoryError:
            connection.send(("memory", ""))
        if reply[0] == "memory":
            return  # a child that ran out of memory may be in a bad state: start a fresh one


_POOLS: dict[ParseLimits, ParserPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_parser_pool(limits: ParseLimits) -> ParserPool:
    """The process's pool for these limits (one set of children, whichever index is active)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(limits)
        if pool is None:
            pool = _POOLS[limits] = ParserPool(limits)
        return pool


def parser_for(settings: Settings) -> Callable[..., ParsedDocument]:
    """The services' parser: the shared pool under the configured per-file limits."""
    ingest = settings.ingest
    limits = ParseLimits(timeout_s=ingest.parse_timeout_s, memory_mb=ingest.parse_memory_mb)
    return shared_parser_pool(limits).parse
