"""Request filters → the vector store's SearchFilter (normalised, so equal intents match)."""

from __future__ import annotations

from api.schemas import SearchFilterIn
from core.vectorstore import SearchFilter


def to_search_filter(
    filters: SearchFilterIn | None, principals: list[str] | None
) -> SearchFilter | None:
    if filters is None and principals is None:
        return None
    filters = filters or SearchFilterIn()
    prefix = filters.path_prefix.strip().strip("/") if filters.path_prefix else ""
    return SearchFilter(
        document_ids=tuple(filters.document_ids),
        # Stored as folder prefixes ending in "/": "reports" must not match "reports-old/".
        path_prefix=f"{prefix}/" if prefix else None,
        file_types=tuple(t.strip().lstrip(".").lower() for t in filters.file_types if t.strip()),
        indexed_after=filters.indexed_after,
        indexed_before=filters.indexed_before,
        metadata=dict(filters.metadata),
        principals=tuple(principals) if principals is not None else None,
    )
