"""Tenant and access-list isolation, checked from the outside through the HTTP API.

A `World` drives ingest, re-ingest, delete and search across several tenants and principals and
remembers what each tenant stored and who may read it. Every document carries a marker word that
no other document has, so any text, id or count in a response can be traced to its owner: a leak
is any hit whose owner is another tenant, or a document the querying principals may not read.
Used by the property-based test (random interleavings) and by `bench/isolation.py` (10,000+
queries).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

WORDS = (
    "harbour", "invoice", "glacier", "turbine", "orchard", "lantern", "compiler", "meadow",
    "satellite", "vineyard", "quarry", "falcon", "ledger", "monsoon", "citadel", "prism",
)  # fmt: skip
PRINCIPALS = ("group:finance", "group:hr", "user:ann", "user:bob")


class Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...

    def post(self, url: str, **kwargs: Any) -> Any: ...

    def delete(self, url: str, **kwargs: Any) -> Any: ...


@dataclass
class StoredDocument:
    tenant: str
    path: str
    marker: str
    principals: list[str] | None
    document_id: str | None = None


@dataclass
class World:
    client: Client
    keys: dict[str, str]  # tenant name → API key
    documents: dict[tuple[str, str], StoredDocument] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    queries: int = 0
    # Every marker ever written (→ tenant, path): text of a replaced or deleted version stays
    # traceable to its owner (the end-user checks, api/eval_end_users.py, need it).
    issued: dict[str, tuple[str, str]] = field(default_factory=dict)
    _serial: int = 0

    def _headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    def ingest(self, tenant: str, path: str, principals: list[str] | None) -> None:
        """Upload (or re-upload with new text and access list) one document and wait for it."""
        self._serial += 1
        marker = f"zq{self._serial}x{random.randrange(10**6)}"
        self.issued[marker] = (tenant, path)
        topic = " ".join(random.sample(WORDS, 3))
        body = f"# {topic}\n\nThe {topic} record {marker} belongs here.\n".encode()
        data = {"principals": _json(principals)} if principals is not None else {}
        response = self.client.post(
            "/v1/ingest/jobs",
            headers=self._headers(tenant),
            files=[("files", (path, body))],
            data=data,
        )
        if response.status_code != 202:
            raise AssertionError(f"ingest refused: {response.status_code} {response.text}")
        job = _wait(self.client, response.json()["id"], self._headers(tenant))
        state = job["files"][0]["state"]
        if state != "done":
            raise AssertionError(f"ingest of {path} ended {state}: {job['files'][0]['error']}")
        self.documents[(tenant, path)] = StoredDocument(
            tenant, path, marker, principals, job["files"][0]["document_id"]
        )

    def delete(self, tenant: str, path: str) -> None:
        stored = self.documents.pop((tenant, path), None)
        if stored is None:
            return
        response = self.client.delete(
            f"/v1/documents/{stored.document_id}", headers=self._headers(tenant)
        )
        if response.status_code not in (200, 204):
            raise AssertionError(f"delete refused: {response.status_code} {response.text}")

    def try_foreign_delete(self, tenant: str, victim: str) -> None:
        """Reading or deleting another tenant's document by its id must fail (404, as for an
        id that does not exist) and change nothing."""
        theirs = [d for d in self.documents.values() if d.tenant == victim]
        if not theirs or victim == tenant:
            return
        target = random.choice(theirs)
        # Nor may it read the document, its chunks, text or original file.
        for part in ("", "/chunks", "/text", "/file"):
            read = self.client.get(
                f"/v1/documents/{target.document_id}{part}", headers=self._headers(tenant)
            )
            if read.status_code != 404:
                self.leaks.append(f"{tenant} reading {victim}'s document{part}: {read.status_code}")
        response = self.client.delete(
            f"/v1/documents/{target.document_id}", headers=self._headers(tenant)
        )
        if response.status_code != 404:
            self.leaks.append(f"{tenant} deleting {victim}'s document got {response.status_code}")

    def search(self, tenant: str, principals: list[str] | None, query: str | None = None) -> None:
        """Search as `tenant` (for an end user with `principals`) and check every hit's owner."""
        self.queries += 1
        body: dict[str, Any] = {"query": query or " ".join(random.sample(WORDS, 2)), "top_k": 20}
        if principals is not None:
            body["principals"] = principals
        response = self.client.post("/v1/search", headers=self._headers(tenant), json=body)
        if response.status_code != 200:
            raise AssertionError(f"search failed: {response.status_code} {response.text}")
        owners = {d.marker: d for d in self.documents.values()}
        for hit in response.json()["hits"]:
            self._check_hit(tenant, principals, hit, owners)

    def _check_hit(
        self,
        tenant: str,
        principals: list[str] | None,
        hit: dict[str, Any],
        owners: dict[str, StoredDocument],
    ) -> None:
        markers = [w for w in hit["text"].replace(".", " ").split() if w.startswith("zq")]
        owner = owners.get(markers[0]) if markers else None
        if owner is None:
            # Text of a document deleted or replaced: it must at least be this tenant's path.
            mine = {d.document_id for d in self.documents.values() if d.tenant == tenant}
            if hit["document_id"] not in mine:
                self.leaks.append(f"{tenant} saw an unknown or stale chunk {hit['document_id']}")
            return
        if owner.tenant != tenant:
            self.leaks.append(f"{tenant} saw {owner.tenant}'s {owner.path}")
        elif (
            principals is not None
            and owner.principals is not None
            and not set(principals) & set(owner.principals)
        ):
            self.leaks.append(f"{principals} of {tenant} saw {owner.path} ({owner.principals})")

    def check_listing(self, tenant: str) -> None:
        """The document listing holds exactly this tenant's documents (no foreign ids, counts)."""
        response = self.client.get("/v1/documents", headers=self._headers(tenant))
        listed = {d["id"] for d in response.json()["documents"]}
        expected = {d.document_id for d in self.documents.values() if d.tenant == tenant}
        if listed != expected:
            self.leaks.append(f"{tenant} listing {len(listed)} documents, expected {len(expected)}")


def random_principals(rng: random.Random) -> list[str] | None:
    if rng.random() < 0.3:
        return None
    return rng.sample(PRINCIPALS, rng.randint(1, 2))


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _wait(client: Client, job_id: str, headers: dict[str, str], timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/ingest/jobs/{job_id}", headers=headers).json()
        if job["status"].startswith("completed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")
