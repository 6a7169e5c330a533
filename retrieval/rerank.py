"""The rerank stage: a port with a local cross-encoder, a remote rerank API, and none."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from core.settings import RerankBackend, RerankSettings


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, higher is better."""


class NoReranker:
    """Keeps the retriever's order: the scores it returns are ignored by the caller."""

    name = "none"

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        return [0.0] * len(passages)


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder read from a folder (baked into the image)."""

    name = "cross-encoder"

    def __init__(self, *, model_path: Path, batch_size: int = 16) -> None:
        if not model_path.is_dir():
            raise FileNotFoundError(f"cross-encoder folder not found: {model_path}")
        self._model_path = model_path
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(
                    str(self._model_path), device="cpu", local_files_only=True
                )

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        if self._model is None:
            self.warm_up()
        scores = self._model.predict(
            [(query, p) for p in passages], batch_size=self._batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]


class RerankUnavailableError(RuntimeError):
    pass


class RemoteReranker:
    """`POST <url>/rerank` as vLLM, Jina and Cohere define it (`results[].relevance_score`);
    text-embeddings-inference's shape (a list of `{index, score}`) is read as well."""

    name = "remote"

    def __init__(
        self, *, url: str, model: str | None, api_key: str | None, timeout_s: float
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._model = model

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        import httpx

        if not passages:
            return []
        body: dict[str, Any] = {
            "query": query,
            "documents": list(passages),
            "texts": list(passages),
        }
        if self._model:
            body["model"] = self._model
        try:
            response = self._client.post("/rerank", json=body)
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RerankUnavailableError(f"rerank API failed: {exc}") from exc
        results = payload["results"] if isinstance(payload, dict) else payload
        scores = [float("-inf")] * len(passages)
        for item in results:
            score = item.get("relevance_score", item.get("score"))
            scores[int(item["index"])] = float(score)
        if float("-inf") in scores:
            raise RerankUnavailableError("rerank API did not score every passage")
        return scores

    def close(self) -> None:
        self._client.close()


def create_reranker(settings: RerankSettings) -> Reranker:
    if settings.backend is RerankBackend.REMOTE:
        if not settings.url:
            raise ValueError("rerank backend remote needs RAGKB_RERANK__URL")
        return RemoteReranker(
            url=settings.url,
            model=settings.model,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout_s=settings.timeout_s,
        )
    if settings.backend is RerankBackend.CROSS_ENCODER:
        if settings.model_path is None:
            raise ValueError("rerank backend cross-encoder needs RAGKB_RERANK__MODEL_PATH")
        return CrossEncoderReranker(model_path=settings.model_path)
    return NoReranker()
