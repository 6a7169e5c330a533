"""A process's handles on the registered vector indexes and on the embedders of their models."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.embedding import ProcessEmbedder, create_embedder, create_local_embedder
from core.indexes import IndexSpec, active_index, all_indexes, ensure_active
from core.settings import EmbeddingSettings, Settings
from core.vectorstore import VectorStore
from core.vectorstore.factory import StoreOpener, collection_name

logger = logging.getLogger(__name__)


class IndexSet:
    """Opens each collection and loads each model once; `active()` reads the pointer in SQL."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        embedder: ProcessEmbedder | None = None,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._opener = StoreOpener(settings)
        self._stores: dict[str, VectorStore] = {}
        self._embedders: dict[tuple[str, str | None], ProcessEmbedder] = {}
        if embedder is not None:
            # A loaded model handed in (tests, evaluations) is reused for its own name.
            key = (embedder.model_name, _path_of(settings.embedding))
            self._embedders[key] = embedder
        self._lock = threading.RLock()

    def configured(self) -> IndexSpec:
        """The index of `RAGKB_EMBEDDING__MODEL`: what a first start registers as active."""
        embedding = self._settings.embedding
        embedder = self._embedder_for(embedding.model, embedding.model_path)
        return IndexSpec(
            collection=collection_name(self._settings, embedder.model_name),
            model_name=embedder.model_name,
            dimension=embedder.dimension,
            model_path=embedding.model_path,
        )

    def spec_for(self, model_name: str, model_path: Path | None = None) -> IndexSpec:
        """The index a model would have (loads the model: its dimension is needed)."""
        embedder = self._embedder_for(model_name, model_path)
        return IndexSpec(
            collection=collection_name(self._settings, embedder.model_name),
            model_name=embedder.model_name,
            dimension=embedder.dimension,
            model_path=model_path,
        )

    def active(self) -> IndexSpec:
        configured: IndexSpec | None = None
        for _ in range(2):
            with self._session_factory() as session:
                row = active_index(session)
                if row is not None:
                    return IndexSpec.of(row)
                configured = configured or self.configured()
                spec = IndexSpec.of(ensure_active(session, configured))
                try:
                    session.commit()
                except IntegrityError:
                    # Another replica registered it first (a first start of several pods).
                    session.rollback()
                    continue
                return spec
        raise RuntimeError("no active vector index could be registered")

    def registered(self) -> list[IndexSpec]:
        """Every registered index: active, building and standby (deletes reach them all)."""
        with self._session_factory() as session:
            return [IndexSpec.of(row) for row in all_indexes(session)]

    def store(self, spec: IndexSpec) -> VectorStore:
        with self._lock:
            store = self._stores.get(spec.collection)
            if store is None:
                store = self._opener.open(spec.collection, dimension=spec.dimension)
                store.ensure_collection()
                self._stores[spec.collection] = store
            return store

    def embedder(self, spec: IndexSpec) -> ProcessEmbedder:
        return self._embedder_for(spec.model_name, spec.model_path)

    def open_collections(self) -> list[str]:
        with self._lock:
            return list(self._stores)

    def release(self, collection: str, *, drop: bool = False) -> None:
        """Close this process's handle on a collection; `drop` also deletes its data."""
        with self._lock:
            store = self._stores.pop(collection, None)
        if store is not None:
            store.drop() if drop else store.close()

    def drop_unopened(self, spec: IndexSpec) -> None:
        """Delete a collection this process has no handle on."""
        with self._lock:
            store = self._opener.open(spec.collection, dimension=spec.dimension)
            store.drop()

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()
        self._opener.close()

    def _embedder_for(self, model_name: str, model_path: Path | None) -> ProcessEmbedder:
        key = (model_name, str(model_path) if model_path else None)
        with self._lock:
            embedder = self._embedders.get(key)
            if embedder is None:
                configured = self._settings.embedding
                if (model_name, model_path) == (configured.model, configured.model_path):
                    # The configured model, embedded as configured: by the service if one
                    # is set (provider=openai), else in-process.
                    embedder = create_embedder(configured)
                else:
                    # Another index's model (the other side of a reindex) loads in-process;
                    # same model, same prefixes: its vectors are the service's.
                    embedder = create_local_embedder(
                        configured.model_copy(
                            update={"model": model_name, "model_path": model_path}
                        )
                    )
                self._embedders[key] = embedder
        embedder.warm_up()
        return embedder


def _path_of(embedding: EmbeddingSettings) -> str | None:
    return str(embedding.model_path) if embedding.model_path else None
