"""Deterministic ids, so a retried task rewrites the same points instead of adding new ones."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c1d3e-2b0a-4c59-9a5e-2d0f8c1b7a11")


def document_id_for(tenant_id: str, path: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"doc\x1f{tenant_id}\x1f{path}"))


def point_id_for(tenant_id: str, document_id: str, version: str, chunk_index: int) -> str:
    return str(
        uuid.uuid5(_NAMESPACE, f"pt\x1f{tenant_id}\x1f{document_id}\x1f{version}\x1f{chunk_index}")
    )
