"""Refusing what the sources do not say: the English default evidence gate and the reader's own
refusal, with the real model, store and (where marked) the real CPU reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.embedding import LocalEmbedder
from core.lexical import LexicalEncoder
from core.metrics import Metrics
from core.settings import LexicalSettings, ReaderSettings, RetrievalSettings
from core.vectorstore import ChunkPoint
from core.vectorstore.edge import EdgeVectorStore
from generation.answer import AnswerService
from generation.client import ChatClient
from generation.prompt import NO_ANSWER
from generation.tokens import ReaderTokenCounter
from generation.verify import CitationVerifier
from ingest.identity import point_id_for
from retrieval.evidence import evidence_sentences
from retrieval.rerank import NoReranker
from retrieval.retriever import RetrievalOptions, Retriever
from tests.services import free_port

HANDBOOK = {
    "hr/vacation.md": "Employees receive 25 days of paid vacation per year. Unused days carry "
    "over to the first quarter of the next year and then lapse.",
    "hr/sick.md": "Sick leave needs a doctor's note from the third day of absence. Report "
    "absence to your team lead before 9:00.",
    "it/passwords.md": "Passwords must be at least 14 characters long and are rotated once a "
    "year. Multi-factor authentication is required for remote access.",
    "ops/rotterdam.md": "The Rotterdam warehouse shipped 48,200 parcels in September, up from "
    "41,500 in August, after the second packaging line opened.",
    "ops/lyon.md": "The Lyon office closes at 17:00 on Fridays. Visitors sign in at reception "
    "and wear a badge at all times.",
    "finance/expenses.md": "Travel expenses are reimbursed within 30 days when the receipts are "
    "uploaded to the expense tool. Business class is allowed on flights over six hours.",
}


@pytest.fixture
def store(embedder: LocalEmbedder, tmp_path: Path) -> EdgeVectorStore:
    if embedder.model_name != "all-MiniLM-L6-v2":
        pytest.skip("the English default model is the one under test")
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
            for path, text in HANDBOOK.items()
        ]
    )
    return store


def make_retriever(
    store: EdgeVectorStore, embedder: LocalEmbedder, settings: RetrievalSettings
) -> Retriever:
    return Retriever(
        store=store, embedder=embedder, lexical=LexicalEncoder(LexicalSettings()),
        reranker=NoReranker(), settings=settings, rerank_candidates=20,
        min_score=settings.min_score_for(embedder.model_name),
        min_coverage=settings.min_coverage_for(embedder.model_name),
        min_sentence=settings.min_sentence_for(embedder.model_name),
    )  # fmt: skip


@pytest.fixture
def retriever(store: EdgeVectorStore, embedder: LocalEmbedder) -> Retriever:
    return make_retriever(store, embedder, RetrievalSettings())  # the default model's defaults


def answer_service(
    retriever: Retriever, embedder: LocalEmbedder, reader: ReaderSettings,
    *, refuse_unsupported: bool = False,
) -> AnswerService:  # fmt: skip
    return AnswerService(
        retriever=retriever, chat_client=ChatClient(reader),
        verifier=CitationVerifier(embedder=embedder, lexical_threshold=0.65,
                                  semantic_threshold=0.5),
        count_tokens=ReaderTokenCounter(reader).count, reader_settings=reader, metrics=Metrics(),
        refuse_unsupported=refuse_unsupported,
    )  # fmt: skip


@pytest.mark.parametrize(
    "question",
    [
        "Who won the 2014 FIFA World Cup?",
        "What is the maximum takeoff weight of a Boeing 747-400?",
        "What is the boiling point of ethanol?",
        "What is the boiling point of mercury?",
        "What was Apple's revenue in 2022?",
    ],
)
def test_an_out_of_corpus_question_is_refused_without_calling_the_reader(
    retriever: Retriever, embedder: LocalEmbedder, question: str
) -> None:
    # A reader nobody listens on: the refusal must come before any reader call.
    unreachable = ReaderSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    service = AnswerService(
        retriever=retriever, chat_client=ChatClient(unreachable),
        verifier=CitationVerifier(embedder=embedder, lexical_threshold=0.65,
                                  semantic_threshold=0.5),
        count_tokens=lambda text: len(text.split()), reader_settings=unreachable,
        metrics=Metrics(),
    )  # fmt: skip
    result = service.answer(tenant_id="t", question=question, top_k=4)
    assert "no_evidence" in result.stages
    assert not result.answered
    assert result.citations == []


@pytest.mark.parametrize(
    ("question", "path"),
    [
        ("How many days of paid vacation do employees get?", "hr/vacation.md"),
        ("How many parcels did the Rotterdam warehouse ship in September?", "ops/rotterdam.md"),
        ("When does the Lyon office close on Fridays?", "ops/lyon.md"),
        ("How long must a password be?", "it/passwords.md"),
    ],
)
def test_an_answerable_question_keeps_its_evidence(
    retriever: Retriever, question: str, path: str
) -> None:
    chunks = retriever.retrieve(tenant_id="t", query=question, top_k=4).chunks
    assert path in [c.path for c in chunks]


@pytest.mark.reader
def test_with_the_reader_out_of_corpus_is_refused_and_answerable_is_cited(
    retriever: Retriever, embedder: LocalEmbedder, reader_url: str
) -> None:
    service = answer_service(
        retriever, embedder, ReaderSettings(base_url=reader_url, temperature=0, max_tokens=96)
    )
    refused = service.answer(
        tenant_id="t", question="What is the boiling point of mercury?", top_k=4
    )
    assert (refused.answered, refused.answer, refused.citations) == (False, NO_ANSWER, [])

    answered = service.answer(
        tenant_id="t", question="How many days of paid vacation do employees get?", top_k=4
    )
    assert answered.answered
    assert "25" in answered.answer
    assert "hr/vacation.md" in [c.path for c in answered.citations]


@pytest.mark.reader
def test_with_refuse_unsupported_an_answer_no_source_states_is_refused(
    store: EdgeVectorStore, embedder: LocalEmbedder, reader_url: str
) -> None:
    # The evidence gate off: the question reaches the reader with the handbook as sources, and
    # the 1.5B reader answers from its own knowledge ("357°C [1]", citing a handbook page).
    settings = RetrievalSettings()
    ungated = Retriever(
        store=store, embedder=embedder, lexical=LexicalEncoder(LexicalSettings()),
        reranker=NoReranker(), settings=settings, rerank_candidates=20, min_score=-1.0,
    )  # fmt: skip
    reader = ReaderSettings(base_url=reader_url, temperature=0, max_tokens=64)
    refused = answer_service(ungated, embedder, reader, refuse_unsupported=True).answer(
        tenant_id="t", question="What is the boiling point of mercury?", top_k=4
    )
    assert (refused.answered, refused.answer, refused.citations) == (False, NO_ANSWER, [])
    assert refused.stages[-1] == "unsupported"
    assert refused.sources  # the sources it was given are still shown

    answered = answer_service(ungated, embedder, reader, refuse_unsupported=True).answer(
        tenant_id="t", question="How many parcels did the Rotterdam warehouse ship in September?",
        top_k=4,
    )  # fmt: skip
    assert answered.answered
    assert answered.stages[-1] == "verify"
    assert any(c.verified and c.path == "ops/rotterdam.md" for c in answered.citations)


def test_a_chinese_question_is_gated_by_the_threshold_for_its_script(
    store: EdgeVectorStore, embedder: LocalEmbedder
) -> None:
    """e5's cosines run higher between Chinese texts: a CJK question has a gate of its own."""
    settings = RetrievalSettings()
    assert settings.min_score_for("multilingual-e5-small") == 0.843
    assert settings.cjk_min_score_for("multilingual-e5-small") == 0.88
    assert settings.cjk_min_score_for("all-MiniLM-L6-v2") is None  # it reads English only
    assert RetrievalSettings(min_score=0.5).cjk_min_score_for("multilingual-e5-small") is None

    def retrieve(question: str, cjk_min_score: float | None) -> list[str]:
        retriever = Retriever(
            store=store, embedder=embedder, lexical=LexicalEncoder(LexicalSettings()),
            reranker=NoReranker(), settings=settings, rerank_candidates=20, min_score=-1.0,
            cjk_min_score=cjk_min_score,
        )  # fmt: skip
        return [c.path for c in retriever.retrieve(tenant_id="t", query=question, top_k=4).chunks]

    chinese = "员工每年有多少天带薪假期？"
    assert retrieve(chinese, None)  # the script's own gate unset: the common one (-1) keeps all
    assert retrieve(chinese, 0.999) == []
    assert "hr/vacation.md" in retrieve("How many days of paid vacation do employees get?", 0.999)


def test_the_best_sentence_threshold_is_applied_when_set(
    store: EdgeVectorStore, embedder: LocalEmbedder
) -> None:
    question = "When does the Lyon office close on Fridays?"
    chunks = (
        make_retriever(store, embedder, RetrievalSettings())
        .retrieve(
            tenant_id="t", query=question, top_k=4, options=RetrievalOptions(evidence_gate=False)
        )
        .chunks
    )
    scored = make_retriever(store, embedder, RetrievalSettings()).with_sentence_signals(
        "t", question, chunks
    )
    best = max(scored, key=lambda c: c.sentence_score or 0.0)
    assert best.path == "ops/lyon.md"
    assert best.sentence_score is not None
    # The chunk's first sentence says it: it scores above the whole two-sentence chunk.
    assert best.sentence_score > (best.dense_score or 0.0)

    strict = RetrievalSettings(min_sentence=best.sentence_score + 0.01)
    refused = make_retriever(store, embedder, strict).retrieve(
        tenant_id="t", query=question, top_k=4
    )
    assert refused.chunks == []
    assert "no_term_coverage" in refused.stages
    kept = RetrievalSettings(min_sentence=best.sentence_score - 0.01)
    found = make_retriever(store, embedder, kept).retrieve(tenant_id="t", query=question, top_k=4)
    assert "ops/lyon.md" in [c.path for c in found.chunks]


def test_chunks_are_cut_into_sentences_for_the_sentence_signal() -> None:
    assert evidence_sentences(HANDBOOK["ops/lyon.md"]) == [
        "The Lyon office closes at 17:00 on Fridays.",
        "Visitors sign in at reception and wear a badge at all times.",
    ]
    # A short piece (a heading, a list number) joins the next sentence.
    assert evidence_sentences("1.\nPasswords must be at least 14 characters long.") == [
        "1. Passwords must be at least 14 characters long."
    ]
