"""Request and response bodies of the /v1 API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, Field, StringConstraints

# Ids are uuids; anything else (a NUL byte, which PostgreSQL refuses in text) is a 422, not a 500.
ID_PATTERN = r"^[0-9A-Za-z-]{1,64}$"
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]
# Free-text names: no control characters.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class FileOut(BaseModel):
    id: str
    path: str
    state: str = Field(description="queued, running, done, failed or skipped")
    error: str | None = Field(None, description="Why the file failed or was skipped.")
    document_id: str | None
    chunk_count: int
    size_bytes: int


class ProgressOut(BaseModel):
    total: int
    queued: int
    running: int
    done: int
    failed: int
    skipped: int
    fraction: float = Field(description="Finished files / total files.")
    chunks_indexed: int = Field(description="Chunks written by the files done so far.")
    files_per_s: float | None = Field(description="Rate since the job's first file started.")
    eta_s: float | None = Field(description="Seconds left at that rate (None before a rate).")


class JobOut(BaseModel):
    id: str
    status: str = Field(description="queued, running, completed or completed_with_errors")
    created_at: datetime
    progress: ProgressOut
    files: list[FileOut]


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="Newest first; each without its files (read a job).")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class DocumentOut(BaseModel):
    id: str
    path: str
    title: str | None
    content_type: str
    size_bytes: int
    chunk_count: int
    version_sha256: str
    updated_at: datetime
    principals: list[str] | None = Field(
        None, description="Who may read it; None: everyone in the tenant."
    )
    metadata: dict[str, str] = Field({}, description="Custom fields given at ingest.")


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null: this was the last page."
    )


class ChunkOut(BaseModel):
    chunk_index: int = Field(description="Position of the chunk in the document, from 0.")
    page: int | None = Field(description="Page (PDF), slide (PPTX) or sheet (XLSX), from 1.")
    section: str | None = Field(description='Heading path, e.g. "Handbook > Vacation".')
    char_start: int = Field(description="Span of the chunk in the document's extracted text.")
    char_end: int
    text: str


class ChunkList(BaseModel):
    document_id: str
    chunks: list[ChunkOut]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null: end.")


class DocumentTextOut(BaseModel):
    document_id: str
    path: str
    char_start: int = Field(description="Where `text` starts in the document's extracted text.")
    char_end: int = Field(description="Where it ends (exclusive).")
    total_chars: int = Field(description="Length of the whole extracted text.")
    page: int | None = Field(None, description="The page asked for, if one was.")
    text: str
    next_char_start: int | None = Field(
        description="Pass as `char_start` to read on; null: the range asked for was read whole."
    )


MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=256)]
Principal = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class DocumentAccessIn(BaseModel):
    """Given with an upload; applies to every file of the job."""

    principals: list[Principal] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Who may read the documents (user and group ids, as the calling app names "
        "them). Omitted: everyone in the tenant. A query that carries principals sees only "
        "documents listing one of them (or none).",
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        {}, max_length=50, description="Custom fields, filterable in search (`filters.metadata`)."
    )
    ocr: Literal["auto", "force"] = Field(
        "auto",
        description="`auto`: PDF pages are read from their text layer, and with OCR only where "
        "a page is a scan (no or little text over a full-page image, or a garbled layer). "
        "`force`: every PDF page is read with OCR, for scans whose text layer reads as words but "
        "is wrong; the files are re-read even when unchanged.",
    )


class SearchFilterIn(BaseModel):
    """Narrows retrieval inside the caller's tenant; the conditions given must all hold."""

    document_ids: list[str] = Field([], max_length=1000, description="Only these documents.")
    path_prefix: str | None = Field(
        None, max_length=1024, description="Only documents under this folder, e.g. `reports/2024`."
    )
    file_types: list[str] = Field(
        [], max_length=50, description="File extensions without the dot, e.g. `pdf`, `docx`."
    )
    indexed_after: datetime | None = Field(
        None, description="Only documents whose current version was indexed at or after this."
    )
    indexed_before: datetime | None = Field(None, description="… or before this.")
    metadata: dict[MetadataKey, MetadataValue] = Field(
        {}, max_length=50, description="Exact matches on the custom metadata given at ingest."
    )


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, description="What to look for, in any language.")
    top_k: int = Field(10, ge=1, le=100)
    filters: SearchFilterIn | None = None
    principals: list[Principal] | None = Field(
        None,
        max_length=256,
        description="The end user's principals (user and group ids), sent by a trusted app: only "
        "documents readable by one of them are searched. Omitted: no per-document access check.",
    )
    mode: str | None = Field(
        None, pattern="^(hybrid|dense|lexical)$", description="Override the configured mode."
    )
    rerank: bool = Field(True, description="Run the configured rerank stage.")


class SearchHitOut(BaseModel):
    rank: int
    document_id: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    text: str
    score: float = Field(description="Fused (or single-ranking) retrieval score.")
    dense_score: float | None = Field(description="Cosine of query and chunk embeddings.")
    rerank_score: float | None
    metadata: dict[str, str]


class SearchResponse(BaseModel):
    hits: list[SearchHitOut]
    stages: list[str]
    timings_ms: dict[str, float]


class QueryRequest(BaseModel):
    question: str = Field(min_length=1, description="The question, in any language.")
    top_k: int | None = Field(None, ge=1, le=20, description="Sources given to the reader.")
    stream: bool = Field(
        False,
        description="Answer as Server-Sent Events: `sources`, `token`…, `citations`, `done` "
        "(or `error`).",
    )
    conversation_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="Continue a conversation: the question is rewritten into a standalone one "
        "from its history before retrieval. Omitted: a new conversation is started.",
    )
    filters: SearchFilterIn | None = Field(None, description="Narrow the sources searched.")
    principals: list[Principal] | None = Field(
        None,
        max_length=256,
        description="The end user's principals: only documents they may read are used.",
    )


class SourceOut(BaseModel):
    number: int = Field(description="The n of `[n]` in the answer.")
    document_id: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    char_start: int = Field(description="Span of the chunk in the document's extracted text.")
    char_end: int
    score: float
    text: str


class CitationOut(BaseModel):
    number: int
    claim: str = Field(description="The answer sentence that carries the citation.")
    document_id: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    char_start: int = Field(description="The quoted span, in the document's extracted text.")
    char_end: int
    quote: str = Field(description="The span of the source that best supports the claim.")
    score: float = Field(description="Retrieval (or rerank) score of the cited source.")
    verified: bool = Field(description="The cited source supports the claim (lexical/semantic).")
    lexical_support: float
    semantic_support: float


class QueryResponse(BaseModel):
    answer: str
    answered: bool = Field(description="False when the sources did not contain the answer.")
    verified: bool = Field(
        description="Answered, and every citation is supported by the source it cites."
    )
    conversation_id: str
    standalone_question: str = Field(
        description="The question as retrieved with (rewritten from the conversation)."
    )
    citations: list[CitationOut]
    sources: list[SourceOut]
    invalid_citation_numbers: list[int] = Field(
        description="Numbers the reader cited that match no source; removed from the answer."
    )
    stages: list[str] = Field(description="Pipeline stages that ran, in order.")
    timings_ms: dict[str, float]


class ErrorOut(BaseModel):
    detail: str


_ERROR_DESCRIPTIONS = {
    401: "Missing, unknown, revoked or expired API key",
    403: "The key lacks the scope this route needs (the reason names it)",
    404: "Not found in the caller's tenant",
    409: "Conflicts with the current state",
    413: "Too large, or over the tenant's quota (the reason says which)",
    422: "The request is malformed",
    429: "The tenant's rate limit is reached; retry after `Retry-After` seconds",
    503: "A dependency (database, vector store, reader) is unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these error statuses, each with the ErrorOut body."""
    return {code: {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}


AUTH_ERRORS = (401, 403)


class LimitsIn(BaseModel):
    """A tenant's own limits; null (or left out) resets one to the configured default."""

    queries_per_minute: float | None = Field(None, gt=0, le=1_000_000)
    ingest_per_minute: float | None = Field(None, gt=0, le=1_000_000)
    max_documents: int | None = Field(None, ge=0, le=2**31 - 1)
    max_stored_bytes: int | None = Field(None, ge=0, le=2**62)


class LimitsOut(BaseModel):
    queries_per_minute: float
    query_burst: int
    ingest_per_minute: float
    ingest_burst: int
    max_documents: int
    max_stored_bytes: int


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    limits: LimitsOut = Field(description="Effective limits (own overrides over the defaults).")
    overrides: LimitsIn = Field(description="The tenant's own overrides; null: the default.")
    documents: int | None = Field(None, description="Stored and queued documents.")
    stored_bytes: int | None = Field(None, description="Stored and queued bytes.")


class TenantList(BaseModel):
    tenants: list[TenantOut]


class TenantIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)


class KeyIn(BaseModel):
    name: str = Field("default", min_length=1, max_length=100, pattern=NAME_PATTERN)
    scopes: list[str] = Field(
        ["ingest", "query", "read"],
        min_length=1,
        description="Any of admin, ingest, query, read. Default: ingest, query, read.",
    )
    expires_at: datetime | None = Field(None, description="When the key stops working (UTC).")


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    key_prefix: str = Field(description="The public part of the key (`rkb_<prefix>_...`).")


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only hashed.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class AuditEventOut(BaseModel):
    id: str
    at: datetime
    api_key_id: str | None
    principal: str | None
    action: str
    outcome: str
    target: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null: end.")
