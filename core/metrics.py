"""Prometheus metrics, on a registry owned by the app (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.http_request_seconds = Histogram(
            "ragkb_http_request_seconds",
            "HTTP request latency by route template and status class.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.stage_seconds = Histogram(
            "ragkb_stage_seconds",
            "Latency of each answer stage (embed_query, retrieve, rerank, rewrite, generate).",
            ["stage"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.reader_ttft_seconds = Histogram(
            "ragkb_reader_time_to_first_token_seconds",
            "Time from sending the prompt to the reader's first token (streamed answers).",
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.reader_tokens_per_second = Histogram(
            "ragkb_reader_tokens_per_second",
            "Reader generation speed per answer.",
            registry=self.registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
        )
        # No tenant label: tenants are created at will, and one series per tenant would let the
        # registry grow without bound. The audit log and the JSON logs name the tenant.
        self.rate_limited_total = Counter(
            "ragkb_rate_limited_total",
            "Requests refused with 429 by a tenant's token bucket, by bucket.",
            ["bucket"],
            registry=self.registry,
        )
        self.shed_total = Counter(
            "ragkb_shed_total",
            "Requests refused by the admission gate, by reason: process (503, no slot within "
            "the wait), tenant (429, the tenant's share is in use), queue (503, queue full).",
            ["reason"],
            registry=self.registry,
        )
        self.http_errors_total = Counter(
            "ragkb_http_errors_total",
            "Error responses by kind (unauthorized, forbidden, not_found, validation, "
            "too_large, rate_limited, server, unavailable, other).",
            ["kind"],
            registry=self.registry,
        )
        self.citations_total = Counter(
            "ragkb_citations_total",
            "Citations made by the reader, by verification outcome.",
            ["outcome"],
            registry=self.registry,
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for key, value in timings_ms.items():
            if key.endswith("_ms") and key != "total_ms":
                self.stage_seconds.labels(stage=key.removesuffix("_ms")).observe(value / 1000)


_ERROR_KINDS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "validation",
    429: "rate_limited",
    503: "unavailable",
}


def error_kind(status_code: int) -> str | None:
    """The bounded label of an error status; None for a success."""
    if status_code < 400:
        return None
    if status_code in _ERROR_KINDS:
        return _ERROR_KINDS[status_code]
    return "server" if status_code >= 500 else "other"
