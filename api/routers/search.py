"""Retrieval only: the ranked chunks a question would be answered from, without the reader."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import QueryCaller, RuntimeDep, record_off_request
from api.end_users import end_user_principals
from api.filters import to_search_filter
from api.routers.query import validate_question
from api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    BUSY_ERRORS,
    SearchHitOut,
    SearchRequest,
    SearchResponse,
    error_responses,
)
from core.audit import AuditAction, event_by
from core.settings import RetrievalMode
from retrieval.retriever import RetrievalOptions

router = APIRouter(prefix="/v1", tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS, *BUSY_ERRORS),
    summary="Search the tenant's chunks (hybrid retrieval and rerank, no answer)",
)
async def search(body: SearchRequest, tenant: QueryCaller, runtime: RuntimeDep) -> SearchResponse:
    """Rank the tenant's chunks for `query`: dense and lexical candidates fused inside Qdrant,
    then the rerank stage (scope `query`; one token of the query rate limit). Filters and
    principals are applied inside Qdrant, before ranking, never to the results afterwards.
    400 when `principals` is missing and the key requires it."""
    query = validate_question(body.query, runtime.settings.max_question_chars)
    principals = end_user_principals(tenant, body.principals)
    # The query's length, never its text: the audit log must not hold tenant content.
    audit_event = event_by(
        tenant,
        AuditAction.SEARCH,
        details={"query_chars": len(query), "principals": len(principals or [])},
        principal=principals[0] if principals else None,
    )
    await record_off_request(runtime, audit_event)
    # The one blocking step (encoder and vector store) runs in the threadpool; the rest of the
    # request stays on the event loop.
    result = await run_in_threadpool(
        runtime.retriever.retrieve,
        tenant_id=tenant.tenant_id,
        query=query,
        top_k=body.top_k,
        filters=to_search_filter(body.filters, principals),
        options=RetrievalOptions(
            mode=RetrievalMode(body.mode) if body.mode else None,
            rerank=body.rerank,
            evidence_gate=False,
        ),
    )
    return SearchResponse(
        hits=[
            SearchHitOut(
                rank=rank,
                document_id=c.document_id,
                path=c.path,
                title=c.title,
                page=c.page,
                section=c.section,
                char_start=c.char_start,
                char_end=c.char_end,
                text=c.text,
                score=c.retrieval_score,
                dense_score=c.dense_score,
                rerank_score=c.rerank_score,
                metadata=c.metadata,
            )
            for rank, c in enumerate(result.chunks, start=1)
        ],
        stages=result.stages,
        timings_ms=result.timings_ms,
    )
