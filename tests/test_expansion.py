"""Query expansion: parsing and fusion as plain functions; the stages against the real reader."""

from __future__ import annotations

from pathlib import Path

from core.embedding import SentenceTransformerEmbedder
from core.lexical import LexicalEncoder
from core.settings import LexicalSettings, QueryExpansion, ReaderSettings, RetrievalSettings
from core.vectorstore import ChunkPoint
from core.vectorstore.edge import EdgeVectorStore
from generation.client import ChatClient
from ingest.identity import point_id_for
from retrieval.expansion import fuse_rankings, parse_queries, query_expanders
from retrieval.rerank import NoReranker
from retrieval.retriever import RetrievalOptions, RetrievedChunk, Retriever


def _chunk(point_id: str, score: float = 1.0) -> RetrievedChunk:
    return RetrievedChunk(
        point_id=point_id, document_id=f"d-{point_id}", path=f"{point_id}.md", title=None,
        page=None, section=None, char_start=0, char_end=1, text=point_id,
        retrieval_score=score, dense_score=score,
    )  # fmt: skip


def test_rewrites_are_parsed_without_markers_duplicates_or_the_question() -> None:
    text = (
        "1. parental leave weeks\n- Parental leave weeks\n\n* How long is leave?\n2) maternity\nx"
    )
    assert parse_queries(text, question="How long is leave?", limit=2) == [
        "parental leave weeks",
        "maternity",
    ]


def test_fusion_ranks_chunks_found_by_several_queries_first_and_keeps_the_questions_fields() -> (
    None
):
    question = [_chunk("a", 0.9), _chunk("b", 0.8)]
    rewrite = [_chunk("c", 0.7), _chunk("b", 0.1)]
    fused = fuse_rankings([question, rewrite])
    assert [c.point_id for c in fused] == ["b", "a", "c"]
    assert fused[0].dense_score == 0.8  # measured against the question, not the rewrite
    assert fused[0].retrieval_score == 1 / 62 + 1 / 62


def test_expansions_through_the_real_reader_add_their_stage_and_find_the_passage(
    reader_url: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    texts = {
        "leave.md": "New parents receive 16 weeks of paid parental leave.",
        "vpn.md": "VPN certificates are renewed every 90 days.",
        "canteen.md": "The canteen serves lunch from noon until two.",
    }
    lexical = LexicalEncoder(LexicalSettings())
    store = EdgeVectorStore(path=tmp_path / "store", dimension=embedder.dimension, lexical=lexical)
    store.upsert(
        [
            ChunkPoint(
                point_id=point_id_for("t", path, "v1", 0),
                tenant_id="t",
                document_id=f"doc-{path}",
                version="v1",
                dense_vector=embedder.embed_query(text),
                payload={"path": path, "text": text, "char_start": 0, "char_end": len(text)},
            )
            for path, text in texts.items()
        ]
    )
    chat = ChatClient(ReaderSettings(base_url=reader_url, temperature=0))
    expanders = query_expanders(
        lambda messages, max_tokens, tenant_id: (
            chat.complete(messages, max_tokens=max_tokens, tenant_id=tenant_id).text
        )
    )
    question = "How long is maternity leave?"
    try:
        for expansion in (QueryExpansion.MULTI_QUERY, QueryExpansion.HYDE):
            extra = expanders[expansion].expand(question, tenant_id="t")
            assert extra
            assert all(q.strip() and q != question for q in extra), extra
            retriever = Retriever(
                store=store, embedder=embedder, lexical=lexical, reranker=NoReranker(),
                settings=RetrievalSettings(expansion=expansion), rerank_candidates=10,
                min_score=0.0, expanders=expanders,
            )  # fmt: skip
            result = retriever.retrieve(tenant_id="t", query=question, top_k=2)
            assert result.stages == ["hybrid", expansion.value]
            assert result.chunks[0].path == "leave.md"
            assert result.timings_ms["expand_ms"] > 0
            plain = retriever.retrieve(
                tenant_id="t", query=question, top_k=2, options=RetrievalOptions(expand=False)
            )
            assert plain.stages == ["hybrid"]
    finally:
        store.close()
