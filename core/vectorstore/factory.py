"""Build the configured vector store."""

from __future__ import annotations

import re

from core.lexical import LexicalEncoder
from core.settings import Settings, VectorStoreKind
from core.vectorstore import VectorStore


def collection_name(settings: Settings, model_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    return f"{settings.vector_store.collection_prefix}__{slug}"


def create_vector_store(settings: Settings, *, model_name: str, dimension: int) -> VectorStore:
    name = collection_name(settings, model_name)
    lexical = LexicalEncoder(settings.retrieval.lexical)
    if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
        from core.vectorstore.edge import EdgeVectorStore

        return EdgeVectorStore(
            path=settings.vector_store_path / name, dimension=dimension, lexical=lexical
        )
    from core.vectorstore.qdrant_server import QdrantServerVectorStore

    api_key = settings.vector_store.api_key
    if settings.vector_store.url:
        return QdrantServerVectorStore(
            collection=name,
            dimension=dimension,
            lexical=lexical,
            url=settings.vector_store.url,
            api_key=api_key.get_secret_value() if api_key else None,
        )
    return QdrantServerVectorStore(
        collection=name, dimension=dimension, lexical=lexical, path=settings.vector_store_path
    )
