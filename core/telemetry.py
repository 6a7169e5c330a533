"""OpenTelemetry traces: off unless an OTLP endpoint is configured (or a test passes an exporter).

One trace per HTTP request (the ASGI instrumentation) and per ingest task, whose context the
Celery instrumentation carries through the broker in the message headers, so the upload request
and the task that indexes its files are one tree. Stages are spans of their own (`span`), with
the GenAI semantic conventions' attribute names (`gen_ai.*`) on the model calls and the tenant
id as `ragkb.tenant_id`; questions, answers and document text are recorded only when
`telemetry.capture_content` is set.

The code that opens spans uses the API's global tracer provider (`trace.get_tracer`): without a
configured provider every span is a no-op costing well under a microsecond.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from core.settings import TelemetrySettings

logger = logging.getLogger(__name__)
TENANT_ATTRIBUTE = "ragkb.tenant_id"
_tracer = trace.get_tracer("ragkb")
_capture_content = False
_configured: Any = None


def configure_tracing(settings: TelemetrySettings, exporter: Any = None) -> Any:
    """Install the process's tracer provider with an OTLP/HTTP exporter to
    `settings.otlp_endpoint` (or the given exporter, e.g. the SDK's in-memory one in tests) and
    instrument Celery; returns the provider, or None when tracing is off. Idempotent: a process
    has one provider (OpenTelemetry refuses to replace it)."""
    global _configured, _capture_content
    if _configured is not None:
        return _configured
    if exporter is None and not settings.otlp_endpoint:
        return None
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = str(settings.otlp_endpoint).rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _capture_content = settings.capture_content
    _configured = provider
    logger.info("tracing on: %s", settings.otlp_endpoint or type(exporter).__name__)
    return provider


def tracing_enabled() -> bool:
    return _configured is not None


def capture_content() -> bool:
    """Whether spans may carry questions, answers and document text (off by default)."""
    return _capture_content


@contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, tenant_id: str | None = None
) -> Iterator[Span]:
    """A child span of the current one with these attributes (None values left out); an
    exception marks it failed and propagates."""
    with _tracer.start_as_current_span(name, record_exception=True) as current:
        if current.is_recording():
            if tenant_id is not None:
                current.set_attribute(TENANT_ATTRIBUTE, tenant_id)
            for key, value in (attributes or {}).items():
                if value is not None:
                    current.set_attribute(key, value)
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def reader_span_attributes(model: str, operation: str = "chat", **request: Any) -> dict[str, Any]:
    """GenAI semantic-convention attributes of a call to the reader (an OpenAI-compatible API)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
    }
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        if request.get(key) is not None:
            attributes[f"gen_ai.request.{key}"] = request[key]
    return attributes


def start_detached_span(name: str, attributes: Mapping[str, Any], tenant_id: str) -> Span:
    """A child of the current span that is not made current: for work that spans the yields of
    a generator (a streamed answer), whose steps may run in different threads and contexts."""
    started = _tracer.start_span(name, attributes={**attributes, TENANT_ATTRIBUTE: tenant_id})
    return started
