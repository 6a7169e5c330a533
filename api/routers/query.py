"""Questions answered from the tenant's documents, with citations."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import RuntimeDep, TenantDep
from api.schemas import CitationOut, ErrorOut, QueryRequest, QueryResponse, SourceOut
from generation.client import ReaderUnavailableError

router = APIRouter(prefix="/v1", tags=["query"])


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        401: {"model": ErrorOut},
        413: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
    summary="Answer a question with citations",
)
def query(body: QueryRequest, tenant: TenantDep, runtime: RuntimeDep) -> QueryResponse:
    """Retrieve the tenant's chunks, rerank, and have the reader answer from numbered sources.

    With no chunk above the evidence threshold the answer says so without calling the reader.
    """
    question = body.question.strip()
    if not question:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the question is empty")
    if len(question) > runtime.settings.max_question_chars:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"question longer than {runtime.settings.max_question_chars} characters",
        )
    top_k = body.top_k or runtime.settings.retrieval.default_top_k
    try:
        result = runtime.answer_service.answer(
            tenant_id=tenant.tenant_id, question=question, top_k=top_k
        )
    except ReaderUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    return QueryResponse(
        answer=result.answer,
        answered=result.answered,
        citations=[CitationOut(**vars(c)) for c in result.citations],
        sources=[
            SourceOut(
                number=n,
                document_id=s.document_id,
                path=s.path,
                title=s.title,
                page=s.page,
                section=s.section,
                char_start=s.char_start,
                char_end=s.char_end,
                score=s.rerank_score if s.rerank_score is not None else s.retrieval_score,
                text=s.text,
            )
            for n, s in enumerate(result.sources, start=1)
        ],
        invalid_citation_numbers=result.invalid_citation_numbers,
        stages=result.stages,
        timings_ms=result.timings_ms,
    )
