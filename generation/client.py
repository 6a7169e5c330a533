"""OpenAI-compatible chat client: vLLM in production, the embedded llama.cpp server by default.

Every request is streamed, `complete` included: closing a stream is the one way to stop a
generation on both servers (vLLM aborts on disconnect; llama.cpp's Python server stops at the next
token, while a plain request runs to its end in the server's thread pool). So a request that
times out is closed before anything else happens, and the reader is free for the next one.

Time limits come from the reader's measured speed (ReaderSettings): `timeout_s` for the first
token, then `max_tokens / min_tokens_per_s` for the rest. Connection errors and 5xx before the
first token are retried with exponential backoff; a timeout is not (its generation is cancelled
and the caller gets a 503: on a one-slot CPU reader a retry would only wait again).

Slots bound the requests this process has in flight to the reader (one for the managed
llama.cpp server), with a smaller bound per tenant (generation/slots.py). A question that finds
no free slot within `slot_wait_s` gets `ReaderBusyError` at once (503 with `Retry-After`)
instead of queueing for minutes behind the reader.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from core.settings import ReaderSettings
from generation.slots import NoSlotError, TenantSlots

_RETRYABLE = (openai.APIConnectionError, openai.InternalServerError)
_BACKOFF_S = 0.5


class ReaderUnavailableError(RuntimeError):
    """The reader could not be reached, timed out or failed; the API answers 503."""


class ReaderBusyError(ReaderUnavailableError):
    """No reader slot freed up within `slot_wait_s`; the API answers 503 with `Retry-After`."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReaderTimeoutError(ReaderUnavailableError):
    """The reader missed its time budget; its generation was cancelled (stream closed)."""


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
    # Not a sampling field: the caller's own instructions for the answer (OpenAI system and
    # developer messages), which the prompt gives after ragkb's rules.
    instructions: str = ""

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
    # None where the server reports no usage on a stream (llama.cpp's Python server; vLLM does).
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
    prompt_tokens: int | None = None
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
            # Bounds each wait (connecting, then every chunk, the first one included); the whole
            # request's deadline is checked between chunks.
            timeout=settings.timeout_s,
            max_retries=0,  # retried here, only before the first token (module docstring)
        )
        self._slots = TenantSlots(
            total=settings.slots,
            per_tenant=min(settings.max_concurrency_per_tenant, settings.slots),
            timeout_s=settings.slot_wait_s,
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
        """The whole answer (streamed upstream, so a timeout cancels the generation)."""
        stats = StreamStats()
        chunks = self.stream(
            messages, stats, max_tokens=max_tokens, tenant_id=tenant_id, options=options
        )
        for _ in chunks:
            pass
        return ChatResult(
            text=stats.text,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            ttft_ms=stats.ttft_ms,
            generation_ms=stats.generation_ms,
        )

    def stream(
        self,
        messages: list[ChatCompletionMessageParam],
        stats: StreamStats,
        *,
        max_tokens: int | None = None,
        tenant_id: str | None = None,
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> Iterator[str]:
        """Yield text deltas as the reader writes them; closing the iterator cancels upstream.

        Raises ReaderBusyError (no slot within `slot_wait_s`), ReaderTimeoutError (first token
        later than `timeout_s`, or the answer not done by `ReaderSettings.deadline_s`), and
        ReaderUnavailableError (unreachable after the retries, refused, broken mid-stream).
        """
        tokens = max_tokens or options.max_tokens or self._settings.max_tokens
        with self._slot(tenant_id):
            fields = options.request_fields(self._settings)
            fields["max_tokens"] = tokens
            started = time.perf_counter()
            deadline = started + self._settings.deadline_s(tokens)
            upstream = self._open(messages, fields)
            try:
                for event in _events(upstream):
                    usage = getattr(event, "usage", None)
                    if usage is not None and usage.prompt_tokens:
                        stats.prompt_tokens = usage.prompt_tokens
                    delta = event.choices[0].delta.content if event.choices else None
                    now = time.perf_counter()
                    if now > deadline:
                        raise ReaderTimeoutError(
                            f"reader timed out: the answer was not done within "
                            f"{self._settings.deadline_s(tokens):.0f} s (generation cancelled)"
                        )
                    if not delta:
                        continue
                    if stats.ttft_ms is None:
                        stats.ttft_ms = round((now - started) * 1000, 2)
                    stats.completion_tokens += 1
                    stats.text_parts.append(delta)
                    stats.generation_ms = round((now - started) * 1000, 2)
                    yield delta
            finally:
                # Closing the HTTP response tells the server to stop generating (vLLM aborts the
                # request on disconnect, llama.cpp stops at its next token), so an abandoned or
                # timed-out request does not hold the reader.
                upstream.close()

    def _open(self, messages: list[ChatCompletionMessageParam], fields: dict[str, Any]) -> Any:
        """The upstream stream, once its response headers came; retried before any token."""
        attempt = 0
        while True:
            try:
                with _request_errors():
                    return self._create(messages, fields)
            except ReaderUnavailableError as exc:
                retryable = isinstance(exc.__cause__, _RETRYABLE) and not isinstance(
                    exc.__cause__, openai.APITimeoutError
                )
                if not retryable or attempt >= self._settings.max_retries:
                    raise
            time.sleep(_BACKOFF_S * 2**attempt)
            attempt += 1

    def _create(self, messages: list[ChatCompletionMessageParam], fields: dict[str, Any]) -> Any:
        """`fields`: the sampling settings (GenerationOptions.request_fields)."""
        request: Callable[..., Any] = self._client.chat.completions.create
        return request(
            model=self._settings.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **fields,
        )

    @contextmanager
    def _slot(self, tenant_id: str | None) -> Iterator[None]:
        try:
            with self._slots.hold(tenant_id):
                yield
        except NoSlotError as exc:
            raise ReaderBusyError(
                str(exc), retry_after_s=self._settings.busy_retry_after_s
            ) from exc

    def close(self) -> None:
        self._client.close()


def _events(upstream: Any) -> Iterator[Any]:
    """The stream's events; a failure while reading them becomes a ReaderUnavailableError."""
    try:
        yield from upstream
    except openai.APITimeoutError as exc:
        raise ReaderTimeoutError("reader timed out waiting for the next token") from exc
    except httpx.TimeoutException as exc:
        raise ReaderTimeoutError("reader timed out waiting for the next token") from exc
    except (openai.APIError, httpx.HTTPError) as exc:
        raise ReaderUnavailableError(f"reader failed mid-stream: {type(exc).__name__}") from exc


@contextmanager
def _request_errors() -> Iterator[None]:
    """Any way the reader can fail to take a request becomes ReaderUnavailableError (503)."""
    try:
        yield
    except openai.APITimeoutError as exc:
        raise ReaderTimeoutError("reader timed out before the first token") from exc
    except openai.APIConnectionError as exc:
        raise ReaderUnavailableError(f"reader unavailable: {type(exc).__name__}") from exc
    except openai.APIStatusError as exc:
        raise ReaderUnavailableError(f"reader refused the request: {exc.status_code}") from exc


def unavailable_headers(exc: Exception) -> dict[str, str]:
    """The 503's headers: `Retry-After` when the reader was busy (no slot in time)."""
    if isinstance(exc, ReaderBusyError):
        return {"Retry-After": str(exc.retry_after_s)}
    return {}


def unavailable_reason(exc: Exception) -> str:
    """The audit/error type of a 503: which service of the answer path failed."""
    return (
        "reader_unavailable" if isinstance(exc, ReaderUnavailableError) else "embedding_unavailable"
    )
