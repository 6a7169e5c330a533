"""The HTTP calls of the ragkb API as plain values: what the sync and async clients send.

Building a call and parsing its answer are pure functions, so the two clients differ only in
how they send (httpx.Client vs httpx.AsyncClient) and cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from api.schemas import SearchFilterIn

FileSource = bytes | IO[bytes] | Path
"""What a file to upload can be: its bytes, an open binary file, or a path to read."""


@dataclass(frozen=True)
class Call:
    """One HTTP request to the API (path relative to the base URL)."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    json_body: Any = None
    files: list[tuple[str, tuple[str, Any]]] | None = None
    form: dict[str, str] | None = None


@dataclass(frozen=True)
class QueryEvent:
    """One Server-Sent Event of a streamed answer.

    `kind` is `sources`, `token`, `citations`, `done` or `error`; `data` is the event's JSON:
    `{"text": ...}` for a token, the whole QueryResponse for `done`, `{"detail": ...}` for `error`.
    """

    kind: str
    data: dict[str, Any]


def _filters(filters: SearchFilterIn | Mapping[str, Any] | None) -> Any:
    if filters is None:
        return None
    if isinstance(filters, SearchFilterIn):
        return filters.model_dump(mode="json", exclude_defaults=True)
    return dict(filters)


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def search(
    query: str,
    *,
    top_k: int = 10,
    filters: SearchFilterIn | Mapping[str, Any] | None = None,
    principals: Sequence[str] | None = None,
    mode: str | None = None,
    rerank: bool = True,
) -> Call:
    """`POST /v1/search`."""
    body = {
        "query": query,
        "top_k": top_k,
        "filters": _filters(filters),
        "principals": list(principals) if principals is not None else None,
        "mode": mode,
        "rerank": rerank,
    }
    return Call("POST", "/v1/search", json_body=_drop_none(body))


def query(
    question: str,
    *,
    top_k: int | None = None,
    filters: SearchFilterIn | Mapping[str, Any] | None = None,
    principals: Sequence[str] | None = None,
    conversation_id: str | None = None,
    stream: bool = False,
) -> Call:
    """`POST /v1/query` (JSON, or Server-Sent Events with `stream`)."""
    body = {
        "question": question,
        "top_k": top_k,
        "filters": _filters(filters),
        "principals": list(principals) if principals is not None else None,
        "conversation_id": conversation_id,
        "stream": stream or None,
    }
    return Call("POST", "/v1/query", json_body=_drop_none(body))


def upload(
    files: Sequence[tuple[str, FileSource]],
    stack: ExitStack,
    *,
    principals: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    ocr: str | None = None,
) -> Call:
    """`POST /v1/ingest/jobs` as multipart: each file under its relative path (`ocr="force"`
    reads every PDF page with OCR).

    A `Path` is opened on `stack`, so the files close when the caller's `with` ends.
    """
    parts: list[tuple[str, tuple[str, Any]]] = []
    for name, source in files:
        content = stack.enter_context(source.open("rb")) if isinstance(source, Path) else source
        parts.append(("files", (name, content)))
    form: dict[str, str] = {}
    if principals is not None:
        form["principals"] = json.dumps(list(principals))
    if metadata:
        form["metadata"] = json.dumps(dict(metadata))
    if ocr is not None:
        form["ocr"] = ocr
    return Call("POST", "/v1/ingest/jobs", files=parts, form=form or None)


def server_folder(path: str) -> Call:
    """`POST /v1/ingest/jobs` with `{"path": ...}`: a folder on the server (allowed roots only)."""
    return Call("POST", "/v1/ingest/jobs", json_body={"path": path})


def get_job(job_id: str, *, include_files: bool = True) -> Call:
    """`GET /v1/ingest/jobs/{id}`."""
    return Call(
        "GET", f"/v1/ingest/jobs/{job_id}", params=[("include_files", str(include_files).lower())]
    )


def list_jobs(*, limit: int = 20, cursor: str | None = None) -> Call:
    """`GET /v1/ingest/jobs`: one page, newest first."""
    params = [("limit", str(limit))] + ([("cursor", cursor)] if cursor is not None else [])
    return Call("GET", "/v1/ingest/jobs", params=params)


def retry_job(job_id: str) -> Call:
    """`POST /v1/ingest/jobs/{id}/retry`."""
    return Call("POST", f"/v1/ingest/jobs/{job_id}/retry")


def _principal_params(principals: Sequence[str] | None) -> list[tuple[str, str]]:
    """Repeated `principals`; an end user in no group (`[]`) as one empty value, since leaving
    the parameter out would mean no end user at all (who reads every document)."""
    if principals is None:
        return []
    return [("principals", p) for p in principals] or [("principals", "")]


def list_documents(
    *,
    limit: int = 100,
    cursor: str | None = None,
    path_prefix: str | None = None,
    path_contains: str | None = None,
    file_type: str | None = None,
    updated_since: datetime | None = None,
    principals: Sequence[str] | None = None,
) -> Call:
    """`GET /v1/documents`: one page."""
    params = {
        "limit": str(limit),
        "cursor": cursor,
        "path_prefix": path_prefix,
        "path_contains": path_contains,
        "file_type": file_type,
        "updated_since": updated_since.isoformat() if updated_since is not None else None,
    }
    return Call(
        "GET",
        "/v1/documents",
        params=[(k, v) for k, v in params.items() if v is not None] + _principal_params(principals),
    )


def document_text(
    document_id: str,
    *,
    char_start: int = 0,
    char_end: int | None = None,
    page: int | None = None,
    max_chars: int = 20_000,
    principals: Sequence[str] | None = None,
) -> Call:
    """`GET /v1/documents/{id}/text`."""
    params = {"char_start": char_start, "char_end": char_end, "page": page, "max_chars": max_chars}
    return Call(
        "GET",
        f"/v1/documents/{document_id}/text",
        params=[(k, str(v)) for k, v in params.items() if v is not None]
        + _principal_params(principals),
    )


def document_file(document_id: str, *, principals: Sequence[str] | None = None) -> Call:
    """`GET /v1/documents/{id}/file`: the original bytes, where kept."""
    return Call("GET", f"/v1/documents/{document_id}/file", params=_principal_params(principals))


def delete_document(document_id: str) -> Call:
    """`DELETE /v1/documents/{id}`."""
    return Call("DELETE", f"/v1/documents/{document_id}")


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """Every regular file under `folder` (symlinks skipped) with its relative POSIX path, sorted."""
    return [
        (p.relative_to(folder).as_posix(), p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    ]


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def job_finished(job: Mapping[str, Any]) -> bool:
    """Whether every file of a job (the API's JSON) reached done, failed or skipped."""
    progress = job["progress"]
    return bool(progress["done"] + progress["failed"] + progress["skipped"] >= progress["total"])


class SSEDecoder:
    """Turns the lines of a `text/event-stream` body into QueryEvents (the subset ragkb sends:
    `event:` and one `data:` line per event, a blank line between events)."""

    def __init__(self) -> None:
        self._kind = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> QueryEvent | None:
        """One line without its newline; returns the event a blank line completes."""
        if not line:
            if not self._data:
                return None
            event = QueryEvent(self._kind, json.loads("\n".join(self._data)))
            self._kind, self._data = "message", []
            return event
        if line.startswith("event:"):
            self._kind = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        return None

    def decode(self, lines: Iterable[str]) -> Iterator[QueryEvent]:
        for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event
        last = self.feed("")
        if last is not None:
            yield last
