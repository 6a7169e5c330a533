"""Schemathesis over the app's own OpenAPI schema, in-process: every response checked against
what the schema declares (status, body shape, content type, headers), plus raw hostile bodies
(not UTF-8, not JSON) on every route that takes one.

Used by tests/test_openapi_fuzz.py (a few examples per route) and bench/schemathesis_run.py (a
longer run whose result is committed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# Bodies no generator writes: the kinds of request that once answered 500.
HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("application/json", b'{"question": "\xff\xfe caf\xe9"}'),
    ("application/json", b"\xff\xfe\x00{"),
    ("application/json", b"[" * 100_000),
    ("application/json", b'{"path": 1e999999, "name": 1e999999, "query": 1e999999}'),
    ("application/json", b'{"top_k": ' + b"9" * 5000 + b"}"),
    ("text/plain", b"\xc3\x28 not json"),
    # Lone surrogate escapes: valid JSON syntax, no character (a chat message's reached the
    # tokenizer; a 422 echoing one could not be encoded).
    (
        "application/json",
        b'{"question": "\\ud800", "query": "\\udfff", "path": "\\ud800", "messages": '
        b'[{"role": "user", "content": "\\ud800"}], "name": "\\ud800"}',
    ),
]


_SOME_ID = "00000000-0000-0000-0000-000000000000"


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    violations: list[str] = field(default_factory=list)
    by_operation: dict[str, Counter[str]] = field(default_factory=dict)

    def record(self, operation: str, status: int, failure: str | None) -> None:
        self.requests += 1
        self.statuses[status] += 1
        counts = self.by_operation.setdefault(operation, Counter())
        counts["requests"] += 1
        if status >= 500:
            self.server_errors += 1
            counts["server_errors"] += 1
        if failure is not None:
            counts["violations"] += 1
            self.violations.append(f"{operation} → {status}: {failure}")


def fuzz_schema(
    api_schema: Any,
    *,
    client: Any,
    headers: dict[str, str],
    max_examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE,),
    anonymous: bool = True,
) -> FuzzReport:
    """Send each operation's generated cases with `headers` (and without them when
    `anonymous`), check every response, and report instead of stopping at the first failure.
    `client` (an httpx-like client of the same app) sends the hostile raw bodies."""
    report = FuzzReport()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=max_examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def exercise(case: Any) -> None:
                variants: list[dict[str, str] | None] = [headers]
                if anonymous:
                    variants.append(None)
                for variant in variants:
                    _call(case, variant, label, report)  # noqa: B023

            try:
                exercise()
            except Unsatisfiable:
                continue  # nothing invalid to send (a route without parameters or body)
        if operation.method.upper() in ("POST", "PUT"):
            _hostile_bodies(operation, client, headers, label, report)
    return report


def _call(case: Any, headers: dict[str, str] | None, label: str, report: FuzzReport) -> None:
    response = case.call(headers=headers) if headers else case.call()
    failure: str | None = None
    try:
        case.validate_response(response, checks=CHECKS)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a check's failure group: recorded, the run goes on
        failure = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    report.record(label, response.status_code, failure)


def _hostile_bodies(
    operation: Any, client: Any, headers: dict[str, str], label: str, report: FuzzReport
) -> None:
    """Raw bodies on a route that takes one, its path parameters filled with a plain id."""
    path = operation.path
    for name in _path_names(path):
        path = path.replace("{" + name + "}", _SOME_ID)
    for content_type, body in HOSTILE_BODIES:
        response = client.request(
            operation.method.upper(), path, content=body,
            headers={**headers, "Content-Type": content_type},
        )  # fmt: skip
        failure = None
        if response.status_code >= 500:
            failure = f"server error on a {content_type} body"
        elif response.status_code not in (400, 404, 413, 415, 422):
            failure = f"a malformed body was answered {response.status_code}"
        report.record(f"{label} (hostile body)", response.status_code, failure)


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
