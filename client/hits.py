"""What a framework adapter keeps of a search hit: the fields an app needs to cite it."""

from __future__ import annotations

from typing import Any

from api.schemas import SearchHitOut


def hit_metadata(hit: SearchHitOut) -> dict[str, Any]:
    """A hit's provenance and scores as flat metadata (document id, path, page, section, the
    chunk's char span in the document's extracted text, fused/dense/rerank scores, rank) plus the
    document's custom fields under `metadata`."""
    return {
        "document_id": hit.document_id,
        "path": hit.path,
        "title": hit.title,
        "page": hit.page,
        "section": hit.section,
        "char_start": hit.char_start,
        "char_end": hit.char_end,
        "rank": hit.rank,
        "score": hit.score,
        "dense_score": hit.dense_score,
        "rerank_score": hit.rerank_score,
        "metadata": dict(hit.metadata),
    }


def chunk_id(hit: SearchHitOut) -> str:
    """A stable id for the chunk: its document and span."""
    return f"{hit.document_id}:{hit.char_start}-{hit.char_end}"
