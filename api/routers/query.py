"""Questions answered from the tenant's documents, with verified citations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from api.deps import QueryCaller, RuntimeDep, SessionDep
from api.end_users import end_user_principals
from api.filters import to_search_filter
from api.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    BUSY_ERRORS,
    CitationOut,
    ErrorOut,
    QueryRequest,
    QueryResponse,
    SourceOut,
    error_responses,
)
from core.audit import AuditAction, Outcome, record_by
from core.embedding_service import EmbeddingUnavailableError
from generation.answer import AnswerResult
from generation.client import ReaderUnavailableError, unavailable_headers, unavailable_reason
from generation.conversations import (
    ConversationNotFoundError,
    append_exchange,
    get_or_create_conversation,
    recent_history,
)
from retrieval.retriever import RetrievedChunk

router = APIRouter(prefix="/v1", tags=["query"])


def validate_question(question: str, max_chars: int) -> str:
    question = question.strip()
    if not question:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the question is empty")
    if "\x00" in question:
        # PostgreSQL cannot store it, and no question needs it.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the question has a NUL byte")
    if len(question) > max_chars:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"question longer than {max_chars} characters"
        )
    return question


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
        **error_responses(*AUTH_ERRORS, *BODY_ERRORS, *BUSY_ERRORS),
        404: {
            "model": ErrorOut,
            "description": "Unknown conversation, or one started for another end user",
        },
    },
    summary="Answer a question with citations",
)
def query(body: QueryRequest, tenant: QueryCaller, runtime: RuntimeDep, session: SessionDep) -> Any:
    """Retrieve the tenant's chunks, rerank, and have the reader answer from numbered sources
    (scope `query`; one token of the tenant's query rate limit).

    Every `[n]` is checked against its source: `verified` when the quoted span states the
    claim's numbers, dates, names and negation and is about it; otherwise `reason` says what is
    missing (e.g. "number 1 not in the source; the source says 13"). With no chunk above the
    evidence threshold the answer says so without calling the reader. With `stream: true` the
    answer comes as Server-Sent Events; closing the connection stops the reader.

    A conversation is bound to the `principals` it was started with (compared as a set): others
    get 404. Its history, which the follow-up is rewritten from, leaves out answers drawing on
    documents the caller may no longer read. 400 when `principals` is missing and the key
    requires it.
    """
    question = validate_question(body.question, runtime.settings.max_question_chars)
    top_k = body.top_k or runtime.settings.retrieval.default_top_k
    principals = end_user_principals(tenant, body.principals)
    filters = to_search_filter(body.filters, principals)
    try:
        conversation = get_or_create_conversation(
            session,
            tenant_id=tenant.tenant_id,
            conversation_id=body.conversation_id,
            principals=principals,
        )
    except ConversationNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    history = recent_history(
        session,
        conversation,
        principals=principals,
        max_turns=runtime.settings.max_history_turns,
    )
    conversation_id = conversation.id
    # The question's length, never its text: the audit log must not hold tenant content.
    audit_details = {"question_chars": len(question), "top_k": top_k, "stream": body.stream}
    record_by(session, tenant, AuditAction.QUERY, target=conversation_id, details=audit_details)
    session.commit()

    def remember(result: AnswerResult) -> None:
        append_exchange(
            runtime.session_factory,
            tenant_id=tenant.tenant_id,
            conversation_id=conversation_id,
            question=question,
            answer=result.answer,
            source_document_ids={s.document_id for s in result.sources} | history.document_ids,
        )

    if body.stream:
        events = runtime.answer_service.stream(
            tenant_id=tenant.tenant_id,
            question=question,
            top_k=top_k,
            history=history.turns,
            filters=filters,
        )
        return StreamingResponse(
            _sse(events, conversation_id, remember),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        result = runtime.answer_service.answer(
            tenant_id=tenant.tenant_id,
            question=question,
            top_k=top_k,
            history=history.turns,
            filters=filters,
        )
    except (ReaderUnavailableError, EmbeddingUnavailableError) as exc:
        record_by(
            session, tenant, AuditAction.QUERY, Outcome.FAILED,
            target=conversation_id, details={**audit_details, "reason": unavailable_reason(exc)},
        )  # fmt: skip
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers=unavailable_headers(exc)
        ) from exc
    remember(result)
    return to_response(result, conversation_id)


def _sse(events: Iterator[Any], conversation_id: str, remember: Any) -> Iterator[str]:
    try:
        for event in events:
            if event.kind == "sources":
                data: Any = {
                    "conversation_id": conversation_id,
                    "sources": [s.model_dump() for s in sources_out(event.data)],
                }
            elif event.kind == "token":
                data = {"text": event.data}
            elif event.kind == "citations":
                data = {
                    "answer": event.data.answer,
                    "citations": [c.model_dump() for c in citations_out(event.data)],
                    "invalid_citation_numbers": event.data.invalid_citation_numbers,
                }
            else:  # done
                remember(event.data)
                data = to_response(event.data, conversation_id).model_dump()
            yield f"event: {event.kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
    except (ReaderUnavailableError, EmbeddingUnavailableError) as exc:
        # A busy reader's Retry-After travels in the event (the 200 was already sent).
        retry = unavailable_headers(exc).get("Retry-After")
        error = {"detail": str(exc), **({"retry_after_s": int(retry)} if retry else {})}
        yield f"event: error\ndata: {json.dumps(error)}\n\n"
    finally:
        # Runs on client disconnect too: closing the generator closes the reader's stream.
        close = getattr(events, "close", None)
        if close is not None:
            close()


def sources_out(sources: list[RetrievedChunk]) -> list[SourceOut]:
    return [
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
            dense_score=s.dense_score,
            coverage=s.coverage,
            text=s.text,
        )
        for n, s in enumerate(sources, start=1)
    ]


def citations_out(result: AnswerResult) -> list[CitationOut]:
    return [CitationOut(**vars(c)) for c in result.citations]


def to_response(result: AnswerResult, conversation_id: str) -> QueryResponse:
    return QueryResponse(
        answer=result.answer,
        answered=result.answered,
        verified=result.verified,
        conversation_id=conversation_id,
        standalone_question=result.standalone_question,
        citations=citations_out(result),
        sources=sources_out(result.sources),
        invalid_citation_numbers=result.invalid_citation_numbers,
        stages=result.stages,
        timings_ms=result.timings_ms,
    )
