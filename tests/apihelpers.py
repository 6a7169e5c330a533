"""Helpers for tests that talk to the HTTP API (in-process or a real server)."""

from __future__ import annotations

import time
from typing import Any, Protocol


class _Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...


def wait_for_job(client: _Client, job_id: str, key: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/ingest/jobs/{job_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"].startswith("completed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def files_by_path(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in job["files"]}
