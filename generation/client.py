"""OpenAI-compatible chat client: vLLM in production, the embedded llama.cpp server by default."""

from __future__ import annotations

from dataclasses import dataclass

from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from core.settings import ReaderSettings


class ReaderUnavailableError(RuntimeError):
    """The reader could not be reached or failed; the API answers 503."""


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None


class ChatClient:
    def __init__(self, settings: ReaderSettings) -> None:
        self._settings = settings
        self._client = OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )

    @property
    def model(self) -> str:
        return self._settings.model

    def complete(self, messages: list[ChatCompletionMessageParam]) -> ChatResult:
        import openai

        try:
            response = self._client.chat.completions.create(
                model=self._settings.model,
                messages=messages,
                max_tokens=self._settings.max_tokens,
                temperature=self._settings.temperature,
            )
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as e:
            raise ReaderUnavailableError(f"reader unavailable: {type(e).__name__}") from e
        usage = response.usage
        return ChatResult(
            text=response.choices[0].message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def close(self) -> None:
        self._client.close()
