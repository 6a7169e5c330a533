"""Statistics isolation, probed from the outside: a tenant's scores must not move when another
tenant's corpus changes.

Lexical scores carry corpus statistics (BM25's IDF). Counted over the whole collection, they let
any tenant learn whether others hold a term: the reported case was a tenant's score for a rare
codename falling from 20.8 to 8.5 when another tenant uploaded 40 files containing it (restricted
to a group, even). The probe: an observing tenant stores a few documents, one naming a fresh
codename, and searches for it (lexical and hybrid, as the tenant and as an end user); a writing
tenant then uploads 40 documents holding the codename, restricted to a group, and later deletes
them; after each step the observer's hits and scores must be exactly what they were. Used by
`tests/test_isolation.py` and `bench/isolation.py`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from api.eval_isolation import Client

MODES = ("lexical", "hybrid")
# The observer's own end user: sees its public documents, not its finance one.
END_USERS: tuple[list[str] | None, ...] = (None, ["user:ann"])
Ranking = list[tuple[str, int, float]]  # (document id, char_start, score) per hit, in rank order


@dataclass
class ProbeResult:
    probes: int = 0
    comparisons: int = 0
    shifts: list[str] = field(default_factory=list)


def probe_statistics(
    client: Client,
    keys: dict[str, str],
    *,
    observer: str,
    writer: str,
    rng: random.Random,
    uploads: int = 40,
    result: ProbeResult | None = None,
) -> ProbeResult:
    """One round of the probe; each score that moved is reported in `result.shifts`."""
    result = result or ProbeResult()
    result.probes += 1
    codename = f"kx{rng.randrange(10**9)}q"
    observed = {
        f"probe-{codename}/plan.md": (f"# Plan\n\nProject {codename} ships in spring.\n", None),
        f"probe-{codename}/notes.md": ("# Notes\n\nThe spring plan and its budget.\n", None),
        f"probe-{codename}/finance.md": (
            f"# Budget\n\nThe {codename} budget is approved.\n",
            ["group:finance"],
        ),
    }
    mine: list[str] = []
    for path, (text, principals) in observed.items():
        mine += _upload(client, keys[observer], {path: text}, principals)
    before = _rankings(client, keys[observer], codename)
    written = _upload(
        client,
        keys[writer],
        {
            f"probe-{codename}/leak-{i}.md": f"# Memo {i}\n\n{codename} memo number {i}.\n"
            for i in range(uploads)
        },
        ["group:finance"],
    )
    _compare(result, before, _rankings(client, keys[observer], codename), f"{writer} uploaded")
    for document_id in written:
        client.delete(f"/v1/documents/{document_id}", headers=_auth(keys[writer]))
    _compare(result, before, _rankings(client, keys[observer], codename), f"{writer} deleted")
    for document_id in mine:
        client.delete(f"/v1/documents/{document_id}", headers=_auth(keys[observer]))
    return result


def _rankings(client: Client, key: str, query: str) -> dict[str, Ranking]:
    rankings: dict[str, Ranking] = {}
    for mode in MODES:
        for principals in END_USERS:
            body: dict[str, Any] = {"query": query, "top_k": 20, "mode": mode, "rerank": False}
            if principals is not None:
                body["principals"] = principals
            response = client.post("/v1/search", headers=_auth(key), json=body)
            if response.status_code != 200:
                raise AssertionError(f"search failed: {response.status_code} {response.text}")
            hits = response.json()["hits"]
            rankings[f"{mode} as {principals or 'the tenant'}"] = [
                (h["document_id"], h["char_start"], h["score"]) for h in hits
            ]
    return rankings


def _compare(
    result: ProbeResult, before: dict[str, Ranking], after: dict[str, Ranking], event: str
) -> None:
    for name, ranking in before.items():
        result.comparisons += 1
        if not ranking:
            result.shifts.append(f"{name}: the observer's own documents were not found")
        elif after[name] != ranking:
            result.shifts.append(f"{name} after {event}: {ranking} became {after[name]}")


def _upload(
    client: Client, key: str, files: dict[str, str], principals: list[str] | None
) -> list[str]:
    """Upload `files` (path → text) in one job and wait; returns the document ids."""
    data = {"principals": json.dumps(principals)} if principals is not None else {}
    response = client.post(
        "/v1/ingest/jobs",
        headers=_auth(key),
        files=[("files", (path, text.encode())) for path, text in files.items()],
        data=data,
    )
    if response.status_code != 202:
        raise AssertionError(f"ingest refused: {response.status_code} {response.text}")
    job = _wait(client, response.json()["id"], key)
    failed = [f for f in job["files"] if f["state"] != "done"]
    if failed:
        raise AssertionError(f"ingest failed: {failed}")
    return [str(f["document_id"]) for f in job["files"]]


def _wait(client: Client, job_id: str, key: str, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/ingest/jobs/{job_id}", headers=_auth(key)).json()
        if job["status"].startswith("completed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
