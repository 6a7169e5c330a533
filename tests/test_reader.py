"""The OpenAI-compatible client against a real llama.cpp server process (the CPU reader)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.embedding import LocalEmbedder
from core.lexical import LexicalEncoder
from core.metrics import Metrics
from core.settings import LexicalSettings, ReaderSettings, RetrievalSettings
from core.vectorstore import ChunkPoint
from core.vectorstore.edge import EdgeVectorStore
from generation import tokens
from generation.answer import AnswerService
from generation.client import (
    ChatClient,
    ReaderBusyError,
    ReaderTimeoutError,
    ReaderUnavailableError,
    StreamStats,
    unavailable_headers,
)
from generation.prompt import build_messages
from generation.reader_model import EXPECTED_SHA256, EXPECTED_SIZE, is_verified
from generation.reader_server import ReaderServer
from generation.tokens import ReaderTokenCounter
from generation.verify import CitationVerifier
from ingest.identity import point_id_for
from retrieval.rerank import NoReranker
from retrieval.retriever import RetrievedChunk, Retriever
from tests.services import free_port

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
        build_messages("How many parcels did the Rotterdam warehouse ship?", sources, datamark=True)
    )
    assert "48,200" in result.text or "48200" in result.text
    assert "[2]" in result.text
    assert result.completion_tokens  # (prompt tokens: only where a stream reports usage)


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


def test_a_timeout_cancels_the_generation_before_anything_else(reader_url: str) -> None:
    """A request past its deadline is closed upstream, so the one-slot reader stops generating it
    and the next request starts at once instead of waiting for the abandoned answer."""
    # The deadline is 6 s after sending (min_tokens_per_s so high that it adds nothing); counting
    # to 500 needs far more than 400 tokens, so the answer cannot end (EOS) before the deadline,
    # and 400 tokens take 20+ s even on 2 idle cores (15-20 tokens/s, docs/reader.md).
    hurried = ChatClient(
        ReaderSettings(
            base_url=reader_url, max_tokens=400, temperature=0, timeout_s=6,
            min_tokens_per_s=1e9, max_retries=2,
        )
    )  # fmt: skip
    stats = StreamStats()
    with pytest.raises(ReaderTimeoutError, match="timed out"):
        for _ in hurried.stream(
            [{"role": "user", "content": "Count from 1 to 500, one number per line."}],
            stats,
        ):
            pass
    assert stats.completion_tokens < 400
    short = ChatClient(ReaderSettings(base_url=reader_url, max_tokens=3, temperature=0))
    started = time.perf_counter()
    short.complete([{"role": "user", "content": "Say yes."}])
    # The rest of 400 tokens at ~15-20 tokens/s would hold the server for 15+ s.
    assert time.perf_counter() - started < 12


def test_a_question_without_a_free_slot_gets_a_fast_busy_error(reader_url: str) -> None:
    """One-slot reader: while an answer is being written, the next question does not queue for
    minutes; it is refused after `slot_wait_s` with a Retry-After."""
    settings = ReaderSettings(base_url=reader_url, max_tokens=300, slot_wait_s=0.2)
    assert settings.slots == 1  # the managed llama.cpp server serves one request at a time
    client = ChatClient(settings)
    writing = client.stream(
        [{"role": "user", "content": "Write a long story about a ship."}], StreamStats()
    )
    next(writing)  # the slot is held while the answer is written
    try:
        with pytest.raises(ReaderBusyError, match="reader busy") as refused:
            client.complete([{"role": "user", "content": "Say yes."}], tenant_id="other")
        assert refused.value.retry_after_s == settings.busy_retry_after_s
        assert unavailable_headers(refused.value) == {
            "Retry-After": str(settings.busy_retry_after_s)
        }
    finally:
        writing.close()  # type: ignore[attr-defined]
    assert client.complete([{"role": "user", "content": "Say yes."}]).text  # the slot is free


def test_answer_service_maps_citations_to_sources(
    reader_url: str, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    texts = {
        "handbook.md": "Employees receive 25 days of paid vacation per year.",
        "r.pdf": "The Rotterdam warehouse shipped 48,200 parcels in September.",
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
        store=store,
        embedder=embedder,
        lexical=lexical,
        reranker=NoReranker(),
        settings=RetrievalSettings(),
        rerank_candidates=10,
        min_score=0.0,
    )
    reader_settings = ReaderSettings(base_url=reader_url, temperature=0)
    service = AnswerService(
        retriever=retriever,
        chat_client=ChatClient(reader_settings),
        verifier=CitationVerifier(embedder=embedder, lexical_threshold=0.5, semantic_threshold=0.6),
        count_tokens=ReaderTokenCounter(reader_settings).count,
        reader_settings=reader_settings,
        metrics=Metrics(),
    )
    result = service.answer(tenant_id="t", question="How many vacation days?", top_k=2)
    store.close()
    assert result.answered
    assert result.stages == ["hybrid", "read:qwen2.5-1.5b-instruct", "verify"]
    assert result.verified
    assert result.citations
    for citation in result.citations:
        cited = result.sources[citation.number - 1]
        assert (citation.path, citation.page, citation.quote) == (
            cited.path,
            cited.page,
            cited.text,
        )
    assert "handbook.md" in {c.path for c in result.citations}


def test_streaming_yields_tokens_and_timings(reader_url: str) -> None:
    client = ChatClient(ReaderSettings(base_url=reader_url, max_tokens=30, temperature=0))
    stats = StreamStats()
    deltas = list(client.stream([{"role": "user", "content": "Count from 1 to 5."}], stats))
    assert len(deltas) > 3
    assert stats.text == "".join(deltas)
    assert stats.ttft_ms is not None
    assert stats.generation_ms is not None
    assert stats.ttft_ms <= stats.generation_ms


def test_closing_a_stream_stops_the_generation(reader_url: str) -> None:
    """An abandoned stream must not keep the reader busy: the next request starts at once."""
    client = ChatClient(ReaderSettings(base_url=reader_url, max_tokens=400, temperature=0.7))
    stream = client.stream(
        [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
        StreamStats(),
    )
    for _ in zip(range(3), stream, strict=False):
        pass
    stream.close()  # type: ignore[attr-defined]
    short = ChatClient(ReaderSettings(base_url=reader_url, max_tokens=3, temperature=0))
    started = time.perf_counter()
    short.complete([{"role": "user", "content": "Say yes."}])
    # 400 tokens at ~15-20 tokens/s would hold the server for 20+ s if generation went on.
    assert time.perf_counter() - started < 12


def test_reader_dying_mid_stream_raises_reader_unavailable(
    reader_model_file: Path, tmp_path: Path
) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    settings = ReaderSettings(base_url=base_url, max_tokens=300, max_retries=0, timeout_s=30)
    server = ReaderServer(
        settings=settings, model_file=reader_model_file, log_file=tmp_path / "r.log"
    )
    server.start()
    try:
        stream = ChatClient(settings).stream(
            [{"role": "user", "content": "Write a long story about a ship."}], StreamStats()
        )
        next(stream)
        server.kill()
        with pytest.raises(ReaderUnavailableError, match=r"mid-stream|unavailable"):
            for _ in stream:
                pass
    finally:
        server.stop()


def test_token_counter_uses_the_readers_tokenizer(reader_url: str) -> None:
    counter = ReaderTokenCounter(ReaderSettings(base_url=reader_url))
    short, long = counter.count("hello"), counter.count("hello " * 50)
    assert 1 <= short <= 3
    assert 45 <= long <= 60


def test_token_counter_estimates_for_a_while_when_the_reader_cannot_count() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    now = [0.0]
    counter = ReaderTokenCounter(
        ReaderSettings(base_url=f"http://127.0.0.1:{port}/v1"), clock=lambda: now[0]
    )
    calls: list[str] = []
    ask = counter._ask_reader

    def counted_ask(text: str) -> int:
        calls.append(text)
        return ask(text)

    counter._counted = counted_ask  # type: ignore[method-assign]
    assert counter.count("hello " * 10) == len(("hello " * 10).encode()) // 2 + 1
    assert counter.count("another text") > 0
    assert calls == ["hello " * 10]  # the reader is not asked again within the minute
    now[0] = tokens.RETRY_AFTER_S + 1
    counter.count("another text")
    assert calls == ["hello " * 10, "another text"]  # asked again afterwards
