"""Schemathesis over the whole API, longer than the test: every route with generated valid
(positive) and invalid (negative) requests, with an admin key of the operator tenant and without
a key, plus hostile raw bodies; every response checked against the OpenAPI schema (status code,
body schema, content type, headers) and for server errors. The tenant holds a few indexed
documents, so listings and jobs return real rows (with their datetimes).

    python bench/schemathesis_run.py --examples 60

Prints a table per route and writes bench/results/schemathesis.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from collections import Counter
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from schemathesis import GenerationMode

from api.app import create_app
from api.eval_openapi import fuzz_schema
from api.runtime import Runtime
from core.db import run_migrations
from core.settings import LimitSettings, ReaderSettings, Settings
from core.tenancy import ALL_SCOPES, create_tenant, issue_api_key

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60, help="Examples per route and mode.")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "schemathesis.json"
    )
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ragkb-schemathesis-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            operator_tenant="ops",
            # No reader: queries over an empty index answer "no evidence" without it.
            reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1", max_retries=0),
            # The run measures the routes, not the tenant's buckets.
            limits=LimitSettings(
                queries_per_minute=10**6, query_burst=10**6,
                ingest_per_minute=10**6, ingest_burst=10**6,
            ),
        )  # fmt: skip
        run_migrations(settings)
        runtime = Runtime.build(settings)
        with runtime.session_factory() as session:
            tenant = create_tenant(session, name="ops")
            key = issue_api_key(session, tenant=tenant, scopes=ALL_SCOPES).plaintext
            session.commit()
        app = create_app(settings, runtime)
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(app) as client:
            _seed(client, headers)
            report = fuzz_schema(
                schemathesis.openapi.from_asgi("/openapi.json", app),
                client=client,
                headers=headers,
                max_examples=args.examples,
                modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
            )
        runtime.close()
    command = shlex.join(["python", "bench/schemathesis_run.py", "--examples", str(args.examples)])
    result = {
        "command": command,
        "seconds": round(time.monotonic() - began, 1),
        "requests": report.requests,
        "server_errors": report.server_errors,
        "schema_violations": len(report.violations),
        "violations": report.violations[:50],
        "statuses": {str(k): v for k, v in sorted(report.statuses.items())},
        "checks": [
            "not_a_server_error",
            "status_code_conformance",
            "response_schema_conformance",
            "content_type_conformance",
            "response_headers_conformance",
            "hostile bodies: 400/404/413/415/422 only",
        ],
        "by_route": {label: dict(counts) for label, counts in sorted(report.by_operation.items())},
        "setup": "in-process ASGI app (embedded default: SQLite, folder broker, qdrant-edge, "
        "MiniLM), no reader; positive and negative generation, with an admin key and without",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| route | requests | server errors | schema violations |\n|---|---|---|---|")
    for label, counts in sorted(report.by_operation.items()):
        row = Counter(counts)
        print(f"| {label} | {row['requests']} | {row['server_errors']} | {row['violations']} |")
    print(
        f"| all | {report.requests} | {report.server_errors} | {len(report.violations)} |\n"
        f"{result['seconds']} s; {command}"
    )
    for line in report.violations[:20]:
        print(line)


def _seed(client: TestClient, headers: dict[str, str]) -> None:
    files = [("files", (f"seed/{i}.md", f"# Note {i}\n\nThe VPN is mandatory.".encode()))
             for i in range(3)]  # fmt: skip
    job = client.post("/v1/ingest/jobs", files=files, headers=headers).json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.get(f"/v1/ingest/jobs/{job['id']}", headers=headers).json()
        if state["status"].startswith("completed"):
            return
        time.sleep(0.5)
    raise RuntimeError("the seed job did not finish")


if __name__ == "__main__":
    main()
