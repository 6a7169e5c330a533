"""OpenAI-compatible chat client: vLLM in production, the embedded llama.cpp server by default.

Retries with exponential backoff on connection errors and 5xx come from the `openai` client
(`max_retries`); slots bound the requests this process has in flight to the reader, so one
replica cannot queue more work on the GPU server than it was sized for, and a smaller bound per
tenant keeps one tenant's burst from taking every slot (generation/slots.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from core.settings import ReaderSettings
from generation.slots import NoSlotError, TenantSlots

_UNAVAILABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError)


class ReaderUnavailableError(RuntimeError):
    """The reader could not be reached, timed out or failed; the API answers 503."""


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling settings of one request (the OpenAI fields of the same names); None: the
    reader's configured value (`temperature`, `max_tokens`) or the server's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def request_fields(self, settings: ReaderSettings) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` these options set."""
        fields: dict[str, Any] = {
            "max_tokens": self.max_tokens or settings.max_tokens,
            "temperature": settings.temperature if self.temperature is None else self.temperature,
        }
        optional = {
            "top_p": self.top_p,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "stop": list(self.stop) or None,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields


DEFAULT_OPTIONS = GenerationOptions()


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft_ms: float | None = None
    generation_ms: float | None = None


@dataclass
class StreamStats:
    """Filled in while a stream is consumed."""

    ttft_ms: float | None = None
    generation_ms: float | None = None
    completion_tokens: int = 0
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.generation_ms or not self.completion_tokens:
            return None
        return self.completion_tokens / (self.generation_ms / 1000)


class ChatClient:
    def __init__(self, settings: ReaderSettings) -> None:
        self._settings = settings
        self._client = OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        self._slots = TenantSlots(
            total=settings.max_concurrency,
            per_tenant=min(settings.max_concurrency_per_tenant, settings.max_concurrency),
            timeout_s=settings.timeout_s,
        )

    @property
    def model(self) -> str:
        return self._settings.model

    @property
    def slots(self) -> TenantSlots:
        return self._slots

    def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        *,
        max_tokens: int | None = None,
        tenant_id: str | None = None,
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> ChatResult:
        started = time.perf_counter()
        fields = options.request_fields(self._settings)
        if max_tokens is not None:
            fields["max_tokens"] = max_tokens
        with self._slot(tenant_id), _request_errors():
            response = self._client.chat.completions.create(
                model=self._settings.model, messages=messages, **fields
            )
        usage = response.usage
        elapsed_ms = (time.perf_counter() - started) * 1000
        return ChatResult(
            text=response.choices[0].message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            generation_ms=round(elapsed_ms, 2),
        )

    def stream(
        self,
        messages: list[ChatCompletionMessageParam],
        stats: StreamStats,
        *,
        tenant_id: str | None = None,
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> Iterator[str]:
        """Yield text deltas as the reader writes them; closing the iterator cancels upstream."""
        started = time.perf_counter()
        with self._slot(tenant_id):
            with _request_errors():
                upstream = self._client.chat.completions.create(
                    model=self._settings.model,
                    messages=messages,
                    stream=True,
                    **options.request_fields(self._settings),
                )
            try:
                for event in upstream:
                    if not event.choices:
                        continue
                    delta = event.choices[0].delta.content
                    if not delta:
                        continue
                    now = time.perf_counter()
                    if stats.ttft_ms is None:
                        stats.ttft_ms = round((now - started) * 1000, 2)
                    stats.completion_tokens += 1
                    stats.text_parts.append(delta)
                    stats.generation_ms = round((now - started) * 1000, 2)
                    yield delta
            except (*_UNAVAILABLE, openai.APIError) as exc:
                raise ReaderUnavailableError(
                    f"reader failed mid-stream: {type(exc).__name__}"
                ) from exc
            except Exception as exc:  # a broken connection surfaces as an httpx error
                import httpx

                if isinstance(exc, httpx.HTTPError):
                    raise ReaderUnavailableError(
                        f"reader failed mid-stream: {type(exc).__name__}"
                    ) from exc
                raise
            finally:
                # Closing the HTTP response tells the server to stop generating (vLLM aborts the
                # request on disconnect), so an abandoned stream does not hold the GPU.
                upstream.close()

    @contextmanager
    def _slot(self, tenant_id: str | None) -> Iterator[None]:
        try:
            with self._slots.hold(tenant_id):
                yield
        except NoSlotError as exc:
            raise ReaderUnavailableError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()


@contextmanager
def _request_errors() -> Iterator[None]:
    """Any way the reader can fail to take a request becomes ReaderUnavailableError (503)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise ReaderUnavailableError(f"reader unavailable: {type(exc).__name__}") from exc
    except openai.APIStatusError as exc:
        raise ReaderUnavailableError(f"reader refused the request: {exc.status_code}") from exc
