"""Request and response bodies of the /v1 API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import HTTPException, Path, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, ValidationError

from core.principals import MAX_PRINCIPAL_CHARS, check_principal

# Ids are uuids; anything else (a NUL byte, which PostgreSQL refuses in text) is a 422, not a 500.
ID_PATTERN = r"^[0-9A-Za-z-]{1,64}$"
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]


def _in_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written as UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Every datetime a response carries: timezone-aware, in UTC (serialised with `Z`).
UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]

# Free-text names: no control characters.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class FileOut(BaseModel):
    id: str
    path: str
    state: str = Field(description="queued, running, done, failed or skipped")
    error: str | None = Field(
        None,
        description="Why the file failed or was skipped; for a done file, what of it was not "
        "read (an e-mail attachment, with why), or null.",
    )
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
    created_at: UtcDatetime
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
    updated_at: UtcDatetime
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
# One rule for every front (core.principals): 1-200 characters, no control characters or
# whitespace at the ends, no `*` (the store's internal "no access list" mark); 422 with the reason.
Principal = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PRINCIPAL_CHARS),
    AfterValidator(check_principal),
]


def _empty_or_principal(value: str) -> str:
    return value if value == "" else check_principal(value)


# A principal in a query string, where a list cannot be empty: the parameter given once with an
# empty value (`?principals=`) names an end user in no group (`[]`), as `"principals": []` does.
QueryPrincipal = Annotated[
    str, StringConstraints(max_length=MAX_PRINCIPAL_CHARS), AfterValidator(_empty_or_principal)
]


def query_principals(values: list[str] | None) -> list[str] | None:
    """The end user's principals from repeated query parameters, empty values left out."""
    return None if values is None else [v for v in values if v]


PRINCIPAL_RULE = (
    " Each principal: 1-200 characters, no control characters, no whitespace at the ends, no "
    "`*` (reserved)."
)


class DocumentAccessIn(BaseModel):
    """Given with an upload; applies to every file of the job."""

    principals: list[Principal] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Who may read the documents (user and group ids, as the calling app names "
        "them). Omitted: everyone in the tenant. A query that carries principals sees only "
        "documents listing one of them (or none)." + PRINCIPAL_RULE,
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
        "documents readable by one of them are searched (`[]`: an end user in no group, who "
        "reads only documents without an access list). Omitted: no per-document access check, "
        "or a 400 when the key requires principals." + PRINCIPAL_RULE,
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
        description="The end user's principals: only documents they may read are used, and a "
        "conversation continues only for the same set of principals (otherwise 404). Omitted: "
        "no per-document access check, or a 400 when the key requires principals." + PRINCIPAL_RULE,
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
    dense_score: float | None = Field(
        None,
        description="Cosine of the question's and the chunk's embeddings (null: not measured).",
    )
    coverage: float | None = Field(
        None,
        description="Share (0-1) of the question's IDF-weighted terms found in the chunk's text, "
        "where the evidence gate measured it (retrieval/evidence.py); null otherwise.",
    )
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
    quote: str = Field(
        description="The span of the cited source that states the claim; when none does, the "
        "span closest to it (the one `reason` is about)."
    )
    score: float = Field(description="Retrieval (or rerank) score of the cited source.")
    verified: bool = Field(
        description="The quote states the claim: every number, date, capitalised name and "
        "negation of the claim is in it (normalised: '92 %' = '92%', 'eight' = 8, '9.82 亿'), and "
        "it is about the claim (word overlap or embedding similarity over its threshold)."
    )
    reason: str | None = Field(
        None,
        description="Why the citation is not verified, e.g. 'number 1 not in the source; the "
        "source says 13'; null when verified.",
    )
    lexical_support: float = Field(
        description="Share of the claim's content words (CJK: character bigrams) in the quote."
    )
    semantic_support: float = Field(
        description="Cosine similarity of claim and quote with the embedding model."
    )


class QueryResponse(BaseModel):
    answer: str
    answered: bool = Field(description="False when the sources did not contain the answer.")
    verified: bool = Field(
        description="Answered, and every citation is verified (its quote states its claim)."
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
    detail: str = Field(description="Why the request was refused, in words.")


class ValidationErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, `query`, `path`, then the field.")
    msg: str
    type: str = Field(description="The kind of error, e.g. `missing`, `json_invalid`.")


class ValidationErrorOut(BaseModel):
    """FastAPI's shape for a malformed request: a list, one item per problem."""

    detail: list[ValidationErrorItem]


_ERROR_DESCRIPTIONS = {
    400: "The body cannot be read (not UTF-8, not parseable, or, for uploads, not multipart), "
    "or is refused as sent (e.g. the key requires the end user's `principals`; the reason says)",
    401: "Missing, unknown, revoked or expired API key (checked before the body is read)",
    403: "The key lacks the scope this route needs (the reason names it)",
    404: "Not found in the caller's tenant",
    409: "Conflicts with the current state",
    413: "Too large (the body, a file, a question), or over the tenant's quota; the reason says "
    "which",
    415: "The body is neither multipart/form-data nor application/json",
    422: "The request is malformed: one item per problem",
    429: "The tenant's rate limit, or its share of the server's in-flight work, is reached; "
    "retry after `Retry-After` seconds",
    503: "A dependency (database, vector store, reader) is unavailable, or the server is at its "
    "in-flight bound, or every reader slot is busy (then with `Retry-After`)",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds after which a retry is likely to be served.",
        "schema": {"type": "integer"},
    }
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these error statuses, each with the body it really has: a list
    of problems for 422, a reason (`ErrorOut`) for the others."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model = ValidationErrorOut if code == 422 else ErrorOut
        responses[code] = {"model": model, "description": _ERROR_DESCRIPTIONS[code]}
        if code in (429, 503):
            responses[code]["headers"] = _RETRY_AFTER
    return responses


# What every /v1 route may answer: no usable key (401, before the body), the database down (503).
V1_ERRORS = (401, 503)
# Routes that need a scope (403).
AUTH_ERRORS = (*V1_ERRORS, 403)
# Routes with a JSON body: unreadable (400), too large (413), malformed (422).
BODY_ERRORS = (400, 413, 422)
# Routes behind the admission gate or a tenant's token bucket (429; 503 is in V1_ERRORS).
BUSY_ERRORS = (429,)


ModelT = TypeVar("ModelT", bound=BaseModel)


def invalid_request(loc: Sequence[str | int], message: str) -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own (a list of problems)."""
    return RequestValidationError([{"type": "value_error", "loc": tuple(loc), "msg": message}])


def parse_json_body(raw: bytes, model: type[ModelT]) -> ModelT:
    """A JSON body read by hand (a route that also takes another content type), refused the
    way FastAPI refuses its own: 422 with a list of problems, 400 when it cannot be parsed."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
              "ctx": {"error": exc.msg}}]
        ) from exc  # fmt: skip
    except (ValueError, RecursionError) as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"the body cannot be parsed as JSON: {exc}"
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc


class LimitsIn(BaseModel):
    """A tenant's own limits; null (or left out) resets one to the configured default."""

    queries_per_minute: float | None = Field(None, gt=0, le=1_000_000)
    ingest_per_minute: float | None = Field(None, gt=0, le=1_000_000)
    max_documents: int | None = Field(None, ge=0, le=2**31 - 1)
    max_stored_bytes: int | None = Field(None, ge=0, le=2**62)
    query_burst: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Queries the tenant may send at once; null: a minute of its rate, at most "
        "`RAGKB_LIMITS__QUERY_BURST`.",
    )
    ingest_burst: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Uploads the tenant may send at once; null: a minute of its rate, at most "
        "`RAGKB_LIMITS__INGEST_BURST`.",
    )


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
    created_at: UtcDatetime
    limits: LimitsOut = Field(description="Effective limits (own overrides over the defaults).")
    overrides: LimitsIn = Field(description="The tenant's own overrides; null: the default.")
    documents: int | None = Field(None, description="Stored and queued documents.")
    stored_bytes: int | None = Field(None, description="Stored and queued bytes.")
    require_principals: bool = Field(
        False,
        description="Default for the tenant's keys without a setting of their own: queries, "
        "searches, chat completions and document reads must carry the end user's `principals`.",
    )


class TenantSettingsIn(BaseModel):
    """Settings a tenant's own admins may change (tightening access, unlike limits)."""

    require_principals: bool = Field(
        description="Queries, searches, chat completions and document reads from the tenant's "
        "keys must carry `principals` (400 otherwise), except keys with their own "
        "`require_principals`."
    )


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
    require_principals: bool | None = Field(
        None,
        description="true: every query, search, chat completion and document read with the key "
        "must name the end user (`principals`), else 400; false: never required; null: the "
        "tenant's setting.",
    )


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None
    key_prefix: str = Field(description="The public part of the key (`rkb_<prefix>_...`).")
    require_principals: bool | None = Field(
        None,
        description="Queries, searches, chat completions and document reads with this key must "
        "carry `principals` (400 otherwise). null: the tenant's `require_principals` applies.",
    )
    requires_principals: bool = Field(
        False, description="What applies to the key now (its own setting or the tenant's)."
    )


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only hashed.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class AuditEventOut(BaseModel):
    id: str
    at: UtcDatetime
    api_key_id: str | None
    principal: str | None
    action: str
    outcome: str
    target: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null: end.")


class CheckOut(BaseModel):
    name: str = Field(description="database, vector_store, broker or reader.")
    ok: bool
    detail: str | None = Field(
        None,
        description="What answered (server, version, model) or why it failed; shown to the "
        "operator tenant's admins only, others see `ok` alone.",
    )


class IndexOut(BaseModel):
    collection: str
    model_name: str = Field(description="The embedding model that fills and queries it.")
    dimension: int
    state: str = Field(description="active, building (a running reindex) or standby.")
    created_at: UtcDatetime
    activated_at: UtcDatetime | None
    points_copied: int = Field(description="Points re-embedded so far by a reindex into it.")
    runner: str | None = Field(description="host:pid running its build; null: none (yet).")
    error: str | None = Field(description="Why its build failed, if it did.")


class QueueOut(BaseModel):
    files_queued: int = Field(description="Job files waiting for a worker.")
    files_running: int = Field(description="Job files a worker holds now.")


class SystemOut(BaseModel):
    status: str = Field(description="`ready` when every check is ok, else `degraded`.")
    checks: list[CheckOut]
    active_index: IndexOut | None
    reindex: IndexOut | None = Field(description="The index a reindex is building; null: none.")
    indexes: list[IndexOut] = Field(description="Every registered index, oldest first.")
    queue: QueueOut = Field(description="The caller's tenant's ingest queue.")
    queue_all_tenants: QueueOut | None = Field(
        None, description="Every tenant's (operator tenant's admins only)."
    )
    operator: bool = Field(description="The caller is an admin of the operator tenant.")
