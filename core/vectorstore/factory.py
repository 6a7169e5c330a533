"""Build the configured vector store: one collection per embedding model."""

from __future__ import annotations

import re
from typing import Any

from core.lexical import LexicalEncoder
from core.settings import Settings, VectorStoreKind
from core.vectorstore import VectorStore


def collection_name(settings: Settings, model_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    return f"{settings.vector_store.collection_prefix}__{slug}"


class StoreOpener:
    """Opens the store of any collection. With qdrant-client every collection of the process
    shares one client: local mode locks its folder to a single client."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None

    def open(self, collection: str, *, dimension: int) -> VectorStore:
        settings = self._settings
        lexical = LexicalEncoder(settings.retrieval.lexical)
        if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
            from core.vectorstore.edge import EdgeVectorStore

            return EdgeVectorStore(
                path=settings.vector_store_path / collection,
                dimension=dimension,
                lexical=lexical,
                layout=settings.vector_store.collection,
            )
        from core.vectorstore.qdrant_server import QdrantServerVectorStore

        if self._client is None:
            from qdrant_client import QdrantClient

            api_key = settings.vector_store.api_key
            self._client = (
                QdrantClient(
                    url=settings.vector_store.url,
                    api_key=api_key.get_secret_value() if api_key else None,
                )
                if settings.vector_store.url
                else QdrantClient(path=str(settings.vector_store_path))
            )
        return QdrantServerVectorStore(
            collection=collection,
            dimension=dimension,
            lexical=lexical,
            client=self._client,
            layout=settings.vector_store.collection,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def create_vector_store(settings: Settings, *, model_name: str, dimension: int) -> VectorStore:
    """The store of one model's collection, on its own (tools and tests; a process serving
    queries goes through `core.vectorstore.binding`, which follows `ragkb reindex`)."""
    name = collection_name(settings, model_name)
    lexical = LexicalEncoder(settings.retrieval.lexical)
    if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
        from core.vectorstore.edge import EdgeVectorStore

        return EdgeVectorStore(
            path=settings.vector_store_path / name,
            dimension=dimension,
            lexical=lexical,
            layout=settings.vector_store.collection,
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
            layout=settings.vector_store.collection,
        )
    return QdrantServerVectorStore(
        collection=name,
        dimension=dimension,
        lexical=lexical,
        path=settings.vector_store_path,
        layout=settings.vector_store.collection,
    )
