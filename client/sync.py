"""The synchronous ragkb client (httpx.Client)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from api.schemas import (
    DocumentList,
    DocumentTextOut,
    JobList,
    JobOut,
    QueryResponse,
    SearchFilterIn,
    SearchResponse,
)
from client import calls
from client.calls import Call, FileSource, QueryEvent
from client.errors import APIConnectionError, raise_for_status


class RagkbClient:
    """A ragkb service, called over HTTP with one API key (the key decides the tenant).

    `base_url` is the service root (`http://host:8000`), `timeout_s` the httpx timeout per
    request in seconds (answers from a CPU reader take seconds; streamed answers are bounded
    per read, not in total). Errors: `client.errors.APIError` subclasses for error statuses
    (carrying the API's `detail` and `Retry-After`), `APIConnectionError` when unreachable.
    Use it as a context manager, or call `close()` (which closes an `http_client` passed in
    too: the client owns it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 300.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._http = http_client or httpx.Client(timeout=timeout_s)
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}

    def __enter__(self) -> RagkbClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> httpx.Response:
        try:
            response = self._http.request(
                call.method,
                self._base_url + call.path,
                params=tuple(call.params),
                json=call.json_body,
                files=call.files,
                data=call.form,
                headers=self._headers,
            )
        except httpx.TransportError as exc:
            raise APIConnectionError(f"{self._base_url}: {exc}") from exc
        raise_for_status(response)
        return response

    # Retrieval and answers.

    def search(
        self,
        query: str,
        *,
        top_k: int = 10,
        filters: SearchFilterIn | Mapping[str, Any] | None = None,
        principals: Sequence[str] | None = None,
        mode: str | None = None,
        rerank: bool = True,
    ) -> SearchResponse:
        """Ranked chunks for `query` (`POST /v1/search`, scope `query`)."""
        call = calls.search(
            query, top_k=top_k, filters=filters, principals=principals, mode=mode, rerank=rerank
        )
        return SearchResponse.model_validate(self._send(call).json())

    def query(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilterIn | Mapping[str, Any] | None = None,
        principals: Sequence[str] | None = None,
        conversation_id: str | None = None,
    ) -> QueryResponse:
        """An answer with verified citations (`POST /v1/query`, scope `query`). Pass the
        returned `conversation_id` back to ask a follow-up in the same conversation."""
        call = calls.query(
            question,
            top_k=top_k,
            filters=filters,
            principals=principals,
            conversation_id=conversation_id,
        )
        return QueryResponse.model_validate(self._send(call).json())

    def query_stream(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilterIn | Mapping[str, Any] | None = None,
        principals: Sequence[str] | None = None,
        conversation_id: str | None = None,
    ) -> Iterator[QueryEvent]:
        """The answer as it is generated: `sources`, `token`…, `citations`, `done` (or `error`).
        Leaving the loop early closes the connection, which stops the reader."""
        call = calls.query(
            question,
            top_k=top_k,
            filters=filters,
            principals=principals,
            conversation_id=conversation_id,
            stream=True,
        )
        try:
            with self._http.stream(
                call.method, self._base_url + call.path, json=call.json_body, headers=self._headers
            ) as response:
                if not response.is_success:
                    response.read()
                    raise_for_status(response)
                yield from calls.SSEDecoder().decode(response.iter_lines())
        except httpx.TransportError as exc:
            raise APIConnectionError(f"{self._base_url}: {exc}") from exc

    # Ingest.

    def upload(
        self,
        files: Sequence[tuple[str, FileSource]],
        *,
        principals: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        ocr: str | None = None,
    ) -> JobOut:
        """Start a job for these `(relative path, bytes | binary file | Path)` files (scope
        `ingest`); returns at once (202) with the job's files queued."""
        with ExitStack() as stack:
            call = calls.upload(files, stack, principals=principals, metadata=metadata, ocr=ocr)
            return JobOut.model_validate(self._send(call).json())

    def upload_folder(
        self,
        folder: Path,
        *,
        principals: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        files_per_request: int = 50,
        ocr: str | None = None,
    ) -> list[JobOut]:
        """Upload every file under `folder` with its relative path, `files_per_request` to a
        job; returns the jobs started (in order)."""
        return [
            self.upload(batch, principals=principals, metadata=metadata, ocr=ocr)
            for batch in calls.batched(calls.folder_files(folder), files_per_request)
        ]

    def ingest_server_folder(self, path: str) -> JobOut:
        """Index a folder on the server (under `RAGKB_INGEST__ALLOWED_ROOTS`; 403 otherwise)."""
        return JobOut.model_validate(self._send(calls.server_folder(path)).json())

    def get_job(self, job_id: str, *, include_files: bool = True) -> JobOut:
        """A job's state and progress (scope `read`)."""
        return JobOut.model_validate(
            self._send(calls.get_job(job_id, include_files=include_files)).json()
        )

    def list_jobs(self, *, limit: int = 20, cursor: str | None = None) -> JobList:
        """A page of the tenant's jobs, newest first, without their files (scope `read`); pass
        `next_cursor` back as `cursor` for the next page."""
        return JobList.model_validate(
            self._send(calls.list_jobs(limit=limit, cursor=cursor)).json()
        )

    def retry_job(self, job_id: str) -> JobOut:
        """Queue a job's failed files again from their kept bytes (scope `ingest`); 409 as
        `APIError` when none is kept."""
        return JobOut.model_validate(self._send(calls.retry_job(job_id)).json())

    def wait_for_job(
        self, job_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None
    ) -> JobOut:
        """Poll until every file of the job is done, failed or skipped; returns the job with its
        files. Raises TimeoutError after `timeout_s` seconds (None: no limit)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id, include_files=False)
            if calls.job_finished(job.model_dump()):
                return self.get_job(job_id)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout_s} s")
            time.sleep(poll_s)

    # Documents.

    def list_documents(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        path_prefix: str | None = None,
        path_contains: str | None = None,
        file_type: str | None = None,
        updated_since: datetime | None = None,
        principals: Sequence[str] | None = None,
    ) -> DocumentList:
        """A page of the tenant's documents by path (scope `read`); pass `next_cursor` back as
        `cursor` for the next page."""
        call = calls.list_documents(
            limit=limit,
            cursor=cursor,
            path_prefix=path_prefix,
            path_contains=path_contains,
            file_type=file_type,
            updated_since=updated_since,
            principals=principals,
        )
        return DocumentList.model_validate((self._send(call)).json())

    def document_text(
        self,
        document_id: str,
        *,
        char_start: int = 0,
        char_end: int | None = None,
        page: int | None = None,
        max_chars: int = 20_000,
        principals: Sequence[str] | None = None,
    ) -> DocumentTextOut:
        """A document's extracted text, or a char range or page of it (scope `read`);
        `next_char_start` continues a long range."""
        call = calls.document_text(
            document_id,
            char_start=char_start,
            char_end=char_end,
            page=page,
            max_chars=max_chars,
            principals=principals,
        )
        return DocumentTextOut.model_validate((self._send(call)).json())

    def document_file(self, document_id: str, *, principals: Sequence[str] | None = None) -> bytes:
        """The document's original file as uploaded (scope `read`); NotFoundError where it is
        not kept (`ingest.keep_originals` and its limits) or the document is not readable."""
        response = self._send(calls.document_file(document_id, principals=principals))
        return response.content

    def delete_document(self, document_id: str) -> None:
        """Delete a document and all its chunks (scope `ingest`)."""
        self._send(calls.delete_document(document_id))
