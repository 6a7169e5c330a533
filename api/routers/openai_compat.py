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
from api.end_users import end_user_principals
from api.filters import to_search_filter
from api.openai_errors import OpenAIErrorOut, OpenAIRequestError, openai_error_responses
from api.openai_schemas import MODEL_ID, ChatCompletionRequest, message_text, unsupported_fields
from api.routers.query import citations_out, validate_question
from api.schemas import (
    AUTH_ERRORS,
    BUSY_ERRORS,
    V1_ERRORS,
    invalid_request,
)
from core.audit import AuditAction, Outcome, record_by
from core.embedding_service import EmbeddingUnavailableError
from generation.answer import AnswerResult
from generation.client import (
    GenerationOptions,
    ReaderUnavailableError,
    unavailable_headers,
    unavailable_reason,
)

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


@router.get(
    "/models", summary="Models (OpenAI-compatible)", responses=openai_error_responses(*V1_ERRORS)
)
def list_models(tenant: TenantDep) -> dict[str, Any]:
    """Any valid key may list the one model, whatever its scopes."""
    return {"object": "list", "data": [_model()]}


@router.get(
    "/models/{model_id}",
    summary="One model (OpenAI-compatible)",
    responses=openai_error_responses(*V1_ERRORS, 404),
)
def retrieve_model(model_id: str, tenant: TenantDep) -> dict[str, Any]:
    """`ragkb`, the only model; any other id is a 404."""
    if model_id != MODEL_ID:
        raise OpenAIRequestError(
            status.HTTP_404_NOT_FOUND,
            f"model {model_id!r} does not exist",
            param="model",
            code="model_not_found",
        )
    return _model()


def _model() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "ragkb"}


def _instructions(body: ChatCompletionRequest, max_chars: int) -> str:
    """The system and developer messages' text, in order: the caller's own instructions for
    the answer (413 past `max_chars` together)."""
    texts = [message_text(m).strip() for m in body.messages if m.role in ("system", "developer")]
    instructions = "\n\n".join(t for t in texts if t)
    if len(instructions) > max_chars:
        raise OpenAIRequestError(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"system and developer messages longer than {max_chars} characters together",
            param="messages",
        )
    return instructions


def _options(body: ChatCompletionRequest, instructions: str) -> GenerationOptions:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return GenerationOptions(
        instructions=instructions,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )


def _usage(result: AnswerResult) -> dict[str, int]:
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish_reason(result: AnswerResult, options: GenerationOptions, max_tokens: int) -> str:
    limit = options.max_tokens or max_tokens
    return "length" if result.usage.completion_tokens >= limit else "stop"


@router.post(
    "/chat/completions",
    summary="Chat completions with RAG (OpenAI-compatible)",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
        **openai_error_responses(*AUTH_ERRORS, 413, *BUSY_ERRORS),
        400: {
            "model": OpenAIErrorOut,
            "description": "Malformed, or a field ragkb does not support set (`error.param` "
            "names the field; every problem is in the message)",
        },
        404: {"model": OpenAIErrorOut, "description": "Unknown model (`model_not_found`)"},
    },
)
def chat_completions(
    body: ChatCompletionRequest, tenant: QueryCaller, runtime: RuntimeDep, session: SessionDep
) -> Any:
    """OpenAI's chat completion over the tenant's documents (scope `query`; one token of the
    tenant's query rate limit). The last user message is the question; earlier user and
    assistant turns make follow-ups standalone; system and developer messages are the caller's
    instructions for the answer (language, length, tone): the reader gets them after ragkb's
    own rules (answer from the numbered sources only, cite them), which they cannot replace
    (413 past `max_instructions_chars` together). Content may be a string or an array of text parts
    (and, in an assistant message, refusal parts).

    Honoured as the OpenAI reference says: `stream`, `stream_options.include_usage`,
    `max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`,
    `presence_penalty`, `frequency_penalty`; `usage` counts the reader's tokens (0 when the
    sources held no evidence and the reader was not called). Anything else that would change
    the result (`n` > 1, tools, logprobs, response formats, images, ...) is a 400 naming the
    field, never ignored. The answer's `[n]` markers and a numbered source list are in the
    message content; the structured citations are in the extra `citations` field (and in the
    last streamed chunk with a choice).

    The answer's `[n]` markers and a numbered source list are in the message content; the
    structured citations are in the extra `citations` field (and in the last streamed chunk),
    shaped like `/v1/query`'s: each with its `quote`, `verified` (the quote states the claim's
    numbers, dates, names and negation, and is about it) and `reason` when it is not.

    `principals` (an extension; `extra_body` in OpenAI's clients) names the end user: only
    documents they may read are retrieved (400 when missing and the key requires it). The
    history is the request's own messages: nothing stored is read, so the rewrite sees only what
    the caller sent.
    """
    problems = unsupported_fields(body)
    window = runtime.settings.reader.context_tokens
    for name in ("max_tokens", "max_completion_tokens"):
        requested = getattr(body, name)
        if requested is not None and requested > window:
            # As OpenAI refuses more than a model can write: the reader's whole window could
            # not hold it, let alone with the question and sources.
            problems.append((name, f"at most {window} (the reader's context window)"))
    if problems:
        raise OpenAIRequestError(
            status.HTTP_400_BAD_REQUEST,
            "; ".join(f"{name}: {why}" for name, why in problems),
            param=problems[0][0],
        )
    if body.model != MODEL_ID:
        raise OpenAIRequestError(
            status.HTTP_404_NOT_FOUND,
            f"model {body.model!r} does not exist; use {MODEL_ID!r}",
            param="model",
            code="model_not_found",
        )
    user_turns = [i for i, m in enumerate(body.messages) if m.role == "user"]
    if not user_turns:
        raise invalid_request(("body", "messages"), "no user message")
    last = user_turns[-1]
    question = validate_question(
        message_text(body.messages[last]), runtime.settings.max_question_chars
    )
    history = [
        (m.role, message_text(m)) for m in body.messages[:last] if m.role in ("user", "assistant")
    ][-runtime.settings.max_history_turns :]
    top_k = runtime.settings.retrieval.default_top_k
    options = _options(body, _instructions(body, runtime.settings.max_instructions_chars))
    max_tokens = runtime.settings.reader.max_tokens
    principals = end_user_principals(tenant, body.principals)
    filters = to_search_filter(None, principals)
    audit_details = {"question_chars": len(question), "messages": len(body.messages),
                     "stream": bool(body.stream)}  # fmt: skip
    record_by(session, tenant, AuditAction.CHAT, details=audit_details)
    session.commit()
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        events = runtime.answer_service.stream(
            tenant_id=tenant.tenant_id,
            question=question,
            top_k=top_k,
            history=history,
            filters=filters,
            options=options,
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(events, completion_id, created, include_usage, options, max_tokens),
            media_type="text/event-stream",
        )
    try:
        result = runtime.answer_service.answer(
            tenant_id=tenant.tenant_id,
            question=question,
            top_k=top_k,
            history=history,
            filters=filters,
            options=options,
        )
    except (ReaderUnavailableError, EmbeddingUnavailableError) as exc:
        record_by(
            session, tenant, AuditAction.CHAT, Outcome.FAILED,
            details={**audit_details, "reason": unavailable_reason(exc)},
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
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": message_content(result),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": _finish_reason(result, options, max_tokens),
            }
        ],
        "usage": _usage(result),
        "citations": [c.model_dump() for c in citations_out(result)],
    }


def message_content(result: AnswerResult) -> str:
    """The answer followed by the sources its citations point at."""
    return result.answer + sources_footer(result)


# Appended to a streamed answer that verification found stated by no source (stage
# `unsupported`): its tokens are already on the client's screen.
UNSUPPORTED_NOTICE = (
    "Not verified: none of the above is stated by the sources, so it is withdrawn. "
    "The sources do not contain the answer."
)


def sources_footer(result: AnswerResult) -> str:
    cited = sorted({c.number: c for c in result.citations}.items())
    if not cited:
        return ""
    lines = [
        f"[{n}] {c.path}" + (f", page {c.page}" if c.page is not None else "") for n, c in cited
    ]
    return "\n\nSources:\n" + "\n".join(lines)


def _chunks(
    events: Iterator[Any],
    completion_id: str,
    created: int,
    include_usage: bool,
    options: GenerationOptions,
    max_tokens: int,
) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        if include_usage:
            payload["usage"] = None
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
                elif not result.answered and "unsupported" in result.stages:
                    # The draft was streamed before it could be verified: take it back.
                    yield chunk({"content": f"\n\n{UNSUPPORTED_NOTICE}"})
                footer = sources_footer(result)
                yield chunk(
                    {"content": footer} if footer else {},
                    _finish_reason(result, options, max_tokens),
                    citations=[c.model_dump() for c in citations_out(result)],
                )
                if include_usage:
                    usage = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": MODEL_ID,
                        "system_fingerprint": None,
                        "choices": [],
                        "usage": _usage(result),
                    }
                    yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
    except (ReaderUnavailableError, EmbeddingUnavailableError) as exc:
        error = {"error": {"message": str(exc), "type": unavailable_reason(exc)}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
