"""An OpenAI-compatible front: existing OpenAI clients get RAG answers over their tenant."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from api.deps import QueryCaller, RuntimeDep, SessionDep, TenantDep
from api.routers.query import citations_out, validate_question
from api.schemas import AUTH_ERRORS, ChatCompletionRequest, error_responses
from core.audit import AuditAction, Outcome, record_by
from generation.answer import AnswerResult
from generation.client import ReaderUnavailableError, unavailable_headers

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
MODEL_ID = "ragkb"


@router.get("/models", summary="Models (OpenAI-compatible)", responses=error_responses(401))
def list_models(tenant: TenantDep) -> dict[str, Any]:
    """Any valid key may list the one model, whatever its scopes."""
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "ragkb"}],
    }


@router.post(
    "/chat/completions",
    summary="Chat completions with RAG (OpenAI-compatible)",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
        **error_responses(*AUTH_ERRORS, 413, 422, 429, 503),
    },
)
def chat_completions(
    body: ChatCompletionRequest, tenant: QueryCaller, runtime: RuntimeDep, session: SessionDep
) -> Any:
    """The last user message is the question; earlier turns make follow-ups standalone
    (scope `query`; one token of the tenant's query rate limit).

    The answer's `[n]` markers and a numbered source list are in the message content; the
    structured citations are in the extra `citations` field (and in the last streamed chunk).
    """
    user_turns = [i for i, m in enumerate(body.messages) if m.role == "user"]
    if not user_turns:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no user message")
    last = user_turns[-1]
    question = validate_question(body.messages[last].content, runtime.settings.max_question_chars)
    history = [
        (m.role, m.content) for m in body.messages[:last] if m.role in ("user", "assistant")
    ][-runtime.settings.max_history_turns :]
    top_k = runtime.settings.retrieval.default_top_k
    audit_details = {"question_chars": len(question), "messages": len(body.messages),
                     "stream": body.stream}  # fmt: skip
    record_by(session, tenant, AuditAction.CHAT, details=audit_details)
    session.commit()
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        events = runtime.answer_service.stream(
            tenant_id=tenant.tenant_id, question=question, top_k=top_k, history=history
        )
        return StreamingResponse(
            _chunks(events, completion_id, created), media_type="text/event-stream"
        )
    try:
        result = runtime.answer_service.answer(
            tenant_id=tenant.tenant_id, question=question, top_k=top_k, history=history
        )
    except ReaderUnavailableError as exc:
        record_by(
            session, tenant, AuditAction.CHAT, Outcome.FAILED,
            details={**audit_details, "reason": "reader_unavailable"},
        )  # fmt: skip
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers=unavailable_headers(exc)
        ) from exc
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": message_content(result)},
                "finish_reason": "stop",
            }
        ],
        "usage": None,
        "citations": [c.model_dump() for c in citations_out(result)],
    }


def message_content(result: AnswerResult) -> str:
    """The answer followed by the sources its citations point at."""
    return result.answer + sources_footer(result)


def sources_footer(result: AnswerResult) -> str:
    cited = sorted({c.number: c for c in result.citations}.items())
    if not cited:
        return ""
    lines = [
        f"[{n}] {c.path}" + (f", page {c.page}" if c.page is not None else "") for n, c in cited
    ]
    return "\n\nSources:\n" + "\n".join(lines)


def _chunks(events: Iterator[Any], completion_id: str, created: int) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant"})
        for event in events:
            if event.kind == "token":
                yield chunk({"content": event.data})
            elif event.kind == "done":
                result: AnswerResult = event.data
                if not result.sources:
                    yield chunk({"content": result.answer})
                footer = sources_footer(result)
                yield chunk(
                    {"content": footer} if footer else {},
                    "stop",
                    citations=[c.model_dump() for c in citations_out(result)],
                )
        yield "data: [DONE]\n\n"
    except ReaderUnavailableError as exc:
        error = {"error": {"message": str(exc), "type": "reader_unavailable"}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
