"""Request bodies of the OpenAI-compatible front, as the OpenAI API reference defines them.

Every field of the reference's chat completion request is declared, so that a field ragkb does
not honour is refused by name (400) instead of being silently ignored; `unsupported_fields`
lists them. Unknown fields are refused the same way.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import PRINCIPAL_RULE, Principal

MODEL_ID = "ragkb"


class ContentPart(BaseModel):
    """One part of a message's content: ragkb reads `text` parts."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="`text`, or `refusal` in an assistant message; image, audio and file parts "
        "are refused (400)."
    )
    text: str | None = None
    refusal: str | None = Field(None, description="A `refusal` part's text (assistant only).")


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = Field(
        None, description="A string, or an array of content parts (text parts are joined)."
    )
    name: str | None = Field(None, description="Accepted; not used.")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(
        False, description="Send a last chunk with `usage` and an empty `choices` list."
    )
    include_obfuscation: bool | None = Field(None, description="Accepted; ragkb never pads.")


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. The last user message is the question; earlier user and
    assistant messages are the conversation (follow-ups are rewritten into standalone questions);
    system and developer messages are the caller's instructions, which the reader gets after
    its own rules (answer from the numbered sources only, cite them)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(MODEL_ID, description=f"`{MODEL_ID}` (see `GET /v1/models`).")
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1, le=128, description="Only 1 is supported.")
    max_tokens: int | None = Field(None, ge=1, description="Upper bound on the answer's tokens.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences.")
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    principals: list[Principal] | None = Field(
        None,
        max_length=256,
        description="ragkb's extension (OpenAI clients: `extra_body`): the end user's principals; "
        "only documents they may read are used. Omitted: no per-document access check, or a 400 "
        "when the key requires principals." + PRINCIPAL_RULE,
    )
    user: str | None = Field(None, max_length=256, description="Accepted; recorded nowhere.")
    safety_identifier: str | None = Field(None, max_length=256, description="As `user`.")
    prompt_cache_key: str | None = Field(None, description="Accepted; not used.")
    # Declared so that they are refused by name when set (see `unsupported_fields`).
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None


# Fields ragkb cannot honour, with the value that means "not used" (the spec's default).
_UNSUPPORTED_UNLESS: dict[str, tuple[object, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, True, False),
    "functions": (None, []),
    "function_call": (None, "none"),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "service_tier": (None, "auto", "default"),
    "store": (None, False),
    "metadata": (None, {}),
    "web_search_options": (None,),
    "verbosity": (None,),
}


def unsupported_fields(body: ChatCompletionRequest) -> list[tuple[str, str]]:
    """The request's fields that ragkb would not honour, each as (the field as OpenAI names a
    parameter, why): unknown fields, fields it does not implement set to another value than
    their default, n > 1, response formats other than text, `stream_options` without `stream`,
    non-text content parts and tool messages. A message field sent as null (or an empty list)
    is the field left out, as replayed histories send `tool_calls: null`, `audio: null`."""
    problems = [
        (name, "not a field of the chat completion request") for name in body.model_extra or {}
    ]
    for name, neutral in _UNSUPPORTED_UNLESS.items():
        if getattr(body, name) not in neutral:
            problems.append((name, "not supported by ragkb"))
    if body.n not in (None, 1):
        problems.append(("n", "only 1 choice is supported"))
    if body.response_format not in (None, {"type": "text"}):
        problems.append(("response_format", "only {'type': 'text'} is supported"))
    if isinstance(body.stop, list) and len(body.stop) > 4:
        problems.append(("stop", "at most 4 sequences"))
    if body.stream_options is not None and not body.stream:
        problems.append(("stream_options", "only allowed when stream is true"))
    for i, message in enumerate(body.messages):
        if message.role in ("tool", "function"):
            problems.append((f"messages[{i}].role", f"{message.role!r} messages are not supported"))
        for key, value in (message.model_extra or {}).items():
            if value is None or value == [] or key in ("refusal", "annotations"):
                continue
            problems.append((f"messages[{i}].{key}", "not supported by ragkb"))
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if not _readable(part, message.role):
                    problems.append(
                        (
                            f"messages[{i}].content[{j}].type",
                            f"{part.type!r} parts are not supported (text only)",
                        )
                    )
    return problems


def _readable(part: ContentPart, role: str) -> bool:
    if part.type == "text":
        return part.text is not None
    # An assistant's earlier refusal is part of the history, as text.
    return part.type == "refusal" and role == "assistant" and part.refusal is not None


def message_text(message: ChatMessageIn) -> str:
    """A message's text: the string, or its text (and refusal) parts joined by newlines."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part.text or part.refusal or "" for part in message.content)
