"""The rerank port with a real cross-encoder loaded from a folder.

No trained cross-encoder can be had offline here, so the model is MiniLM with an untrained
classification head: its scores say nothing about quality, but loading, scoring and reordering
are the real code path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.embedding import LocalEmbedder, packaged_model_path
from core.lexical import LexicalEncoder
from core.settings import LexicalSettings, RerankBackend, RerankSettings, RetrievalSettings
from core.vectorstore import ChunkPoint
from core.vectorstore.edge import EdgeVectorStore
from retrieval.rerank import (
    CrossEncoderReranker,
    NoReranker,
    RemoteReranker,
    RerankUnavailableError,
    create_reranker,
)
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
    cross_encoder_dir: Path, embedder: LocalEmbedder, tmp_path: Path
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


class _RerankServer:
    """A `/rerank` HTTP server in vLLM's (or TEI's) response shape, scoring with the real
    cross-encoder: vLLM itself needs a GPU, so the protocol is served here by the same model."""

    def __init__(self, reranker: CrossEncoderReranker, *, shape: str) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.requests: list[dict[str, object]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), **body}
                )
                if body["query"] == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                scores = reranker.rerank(body["query"], body["documents"])
                items = [
                    {"index": i, "relevance_score" if shape == "vllm" else "score": s}
                    for i, s in sorted(enumerate(scores), key=lambda x: -x[1])
                ]
                payload = {"results": items} if shape == "vllm" else items
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("shape", ["vllm", "tei"])
def test_remote_reranker_speaks_the_rerank_api(cross_encoder_dir: Path, shape: str) -> None:
    local = CrossEncoderReranker(model_path=cross_encoder_dir)
    server = _RerankServer(local, shape=shape)
    try:
        remote = create_reranker(
            RerankSettings(
                backend=RerankBackend.REMOTE, url=server.url, model="bge-reranker", api_key="s3cret"
            )
        )
        assert isinstance(remote, RemoteReranker)
        passages = [
            "Parcels ship from Rotterdam.",
            "Vacation is 25 days.",
            "Warehouses store parcels.",
        ]
        assert remote.rerank("parcels", passages) == pytest.approx(
            local.rerank("parcels", passages), abs=1e-5
        )
        assert server.requests[0]["path"] == "/v1/rerank"
        assert server.requests[0]["auth"] == "Bearer s3cret"
        assert server.requests[0]["model"] == "bge-reranker"
        assert remote.rerank("parcels", []) == []
        with pytest.raises(RerankUnavailableError):
            remote.rerank("fail", passages)
        remote.close()
    finally:
        server.close()
    with pytest.raises(ValueError, match="RERANK__URL"):
        create_reranker(RerankSettings(backend=RerankBackend.REMOTE))


def test_search_survives_a_rerank_outage(embedder: LocalEmbedder, tmp_path: Path) -> None:
    lexical = LexicalEncoder(LexicalSettings())
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=lexical)
    vector = embedder.embed_query("parcels")
    point = ChunkPoint(
        "00000000-0000-0000-0000-000000000001", "t", "d", "v", vector, {"text": "parcels"}
    )
    store.upsert([point])
    unreachable = create_reranker(
        RerankSettings(backend=RerankBackend.REMOTE, url="http://127.0.0.1:9/v1", timeout_s=2)
    )
    retriever = Retriever(
        store=store, embedder=embedder, lexical=lexical, reranker=unreachable,
        settings=RetrievalSettings(), rerank_candidates=5, min_score=0.0,
    )  # fmt: skip
    result = retriever.retrieve(tenant_id="t", query="parcels", top_k=3)
    store.close()
    assert result.stages == ["hybrid", "rerank:unavailable"]
    assert [c.text for c in result.chunks] == ["parcels"]
