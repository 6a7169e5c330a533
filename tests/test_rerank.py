"""The rerank port with a real cross-encoder loaded from a folder.

No trained cross-encoder can be had offline here, so the model is MiniLM with an untrained
classification head: its scores say nothing about quality, but loading, scoring and reordering
are the real code path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.embedding import SentenceTransformerEmbedder, packaged_model_path
from core.lexical import LexicalEncoder
from core.settings import LexicalSettings, RerankBackend, RerankSettings, RetrievalSettings
from core.vectorstore import ChunkPoint
from core.vectorstore.edge import EdgeVectorStore
from retrieval.rerank import CrossEncoderReranker, NoReranker, create_reranker
from retrieval.retriever import Retriever


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sentence_transformers import CrossEncoder

    target = tmp_path_factory.mktemp("cross-encoder")
    model = CrossEncoder(str(packaged_model_path("all-MiniLM-L6-v2")), num_labels=1)
    model.save(str(target))
    return target


def test_factory_picks_the_backend(cross_encoder_dir: Path) -> None:
    assert isinstance(create_reranker(RerankSettings()), NoReranker)
    reranker = create_reranker(
        RerankSettings(backend=RerankBackend.CROSS_ENCODER, model_path=cross_encoder_dir)
    )
    assert isinstance(reranker, CrossEncoderReranker)
    with pytest.raises(ValueError, match="MODEL_PATH"):
        create_reranker(RerankSettings(backend=RerankBackend.CROSS_ENCODER))
    with pytest.raises(FileNotFoundError):
        CrossEncoderReranker(model_path=cross_encoder_dir / "missing")


def test_retriever_orders_by_rerank_score(
    cross_encoder_dir: Path, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    reranker = CrossEncoderReranker(model_path=cross_encoder_dir)
    texts = [f"Passage {i} about parcels and warehouses." for i in range(5)]
    lexical = LexicalEncoder(LexicalSettings())
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=lexical)
    store.upsert(
        [
            ChunkPoint(f"00000000-0000-0000-0000-00000000000{i}", "t", f"d{i}", "v",
                       embedder.embed_query(t), {"text": t, "path": f"{i}.md"})
            for i, t in enumerate(texts)
        ]
    )  # fmt: skip
    retriever = Retriever(
        store=store,
        embedder=embedder,
        lexical=lexical,
        reranker=reranker,
        settings=RetrievalSettings(),
        rerank_candidates=5,
        min_score=0.0,
    )
    result = retriever.retrieve(tenant_id="t", query="parcels", top_k=3)
    store.close()
    assert result.stages == ["hybrid", "rerank:cross-encoder"]
    assert "rerank_ms" in result.timings_ms
    scores = [c.rerank_score for c in result.chunks]
    assert len(scores) == 3
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    expected = reranker.rerank("parcels", texts)
    assert scores[0] == pytest.approx(max(expected), abs=1e-5)
