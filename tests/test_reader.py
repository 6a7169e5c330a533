"""The OpenAI-compatible client against a real llama.cpp server process (the CPU reader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.embedding import SentenceTransformerEmbedder
from core.settings import ReaderSettings
from core.vectorstore import ChunkPoint
from core.vectorstore.edge import EdgeVectorStore
from generation.answer import AnswerService
from generation.client import ChatClient, ReaderUnavailableError
from generation.prompt import build_messages
from generation.reader_model import EXPECTED_SHA256, EXPECTED_SIZE, is_verified
from ingest.identity import point_id_for
from retrieval.rerank import NoReranker
from retrieval.retriever import RetrievedChunk, Retriever
from tests.conftest import free_port

pytestmark = pytest.mark.reader


def chunk(text: str, path: str = "p.md", page: int | None = None) -> RetrievedChunk:
    return RetrievedChunk(
        point_id="x", document_id=f"doc-{path}", path=path, title=None, page=page, section=None,
        char_start=0, char_end=len(text), text=text, retrieval_score=0.9,
    )  # fmt: skip


def test_reader_model_file_is_verified(reader_model_file: Path) -> None:
    assert reader_model_file.stat().st_size == EXPECTED_SIZE
    assert is_verified(reader_model_file)
    assert (
        EXPECTED_SHA256
        in reader_model_file.with_name(reader_model_file.name + ".verified").read_text()
    )


def test_chat_completion_cites_the_right_source(reader_url: str) -> None:
    client = ChatClient(ReaderSettings(base_url=reader_url, max_tokens=80, temperature=0))
    sources = [
        chunk("Passwords must be at least 14 characters long and rotated yearly."),
        chunk("The Rotterdam warehouse shipped 48,200 parcels in September.", "r.pdf", 2),
    ]
    result = client.complete(
        build_messages("How many parcels did the Rotterdam warehouse ship?", sources)
    )
    assert "48,200" in result.text or "48200" in result.text
    assert "[2]" in result.text
    assert result.prompt_tokens
    assert result.completion_tokens


def test_unreachable_reader_raises_reader_unavailable() -> None:
    client = ChatClient(
        ReaderSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0, timeout_s=5)
    )
    with pytest.raises(ReaderUnavailableError):
        client.complete([{"role": "user", "content": "hi"}])


def test_timeout_raises_reader_unavailable(reader_url: str) -> None:
    client = ChatClient(
        ReaderSettings(base_url=reader_url, max_retries=0, timeout_s=0.05, max_tokens=200)
    )
    with pytest.raises(ReaderUnavailableError):
        client.complete([{"role": "user", "content": "Write a long story about a cat."}])


def test_answer_service_maps_citations_to_sources(
    reader_url: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    texts = {
        "handbook.md": "Employees receive 25 days of paid vacation per year.",
        "r.pdf": "The Rotterdam warehouse shipped 48,200 parcels in September.",
    }
    store = EdgeVectorStore(path=tmp_path / "store", dimension=embedder.dimension)
    store.upsert(
        [
            ChunkPoint(
                point_id=point_id_for("t", path, "v1", 0),
                tenant_id="t",
                document_id=f"doc-{path}",
                version="v1",
                dense_vector=embedder.embed_query(text),
                payload={
                    "path": path,
                    "text": text,
                    "page": 2 if path == "r.pdf" else None,
                    "char_start": 0,
                    "char_end": len(text),
                },
            )
            for path, text in texts.items()
        ]
    )
    retriever = Retriever(
        store=store, embedder=embedder, reranker=NoReranker(), candidates=10, min_score=0.0
    )
    service = AnswerService(
        retriever=retriever,
        chat_client=ChatClient(ReaderSettings(base_url=reader_url, temperature=0)),
    )
    result = service.answer(tenant_id="t", question="How many vacation days?", top_k=2)
    store.close()
    assert result.answered
    assert result.stages == ["dense", "read:qwen2.5-1.5b-instruct"]
    assert result.citations
    for citation in result.citations:
        cited = result.sources[citation.number - 1]
        assert (citation.path, citation.page, citation.quote) == (
            cited.path,
            cited.page,
            cited.text,
        )
    assert "handbook.md" in {c.path for c in result.citations}
