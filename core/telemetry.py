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
from collections.abc import Iterator
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

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
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
def span(name: str, *, tenant_id: str | None = None, **attributes: Any) -> Iterator[Span]:
    """A child span of the current one; an exception marks it failed and propagates."""
    with _tracer.start_as_current_span(name, record_exception=True) as current:
        if current.is_recording():
            if tenant_id is not None:
                current.set_attribute(TENANT_ATTRIBUTE, tenant_id)
            for key, value in attributes.items():
                if value is not None:
                    current.set_attribute(key, value)
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
