"""The lexical encoder: what enters Qdrant's sparse index."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core.embedding import SentenceTransformerEmbedder
from core.lexical import LexicalEncoder, SparseVector, cjk_terms, term_index, weight_by_idf
from core.settings import LexicalSettings, RetrievalMode, RetrievalSettings
from core.vectorstore import ChunkPoint, SearchFilter
from core.vectorstore.edge import EdgeVectorStore
from retrieval.idf_cache import IdfCache
from retrieval.rerank import NoReranker
from retrieval.retriever import RetrievalOptions, Retriever

ENCODER = LexicalEncoder(LexicalSettings())


def test_english_is_lowercased_stemmed_and_stop_words_dropped() -> None:
    assert ENCODER.terms("The Studies of running Cells") == ["studi", "run", "cell"]
    assert ENCODER.terms("and the of") == []


def test_chinese_becomes_character_bigrams_and_mixed_tokens_split() -> None:
    assert cjk_terms("带薪年假") == ["带薪", "薪年", "年假"]
    assert cjk_terms("假") == ["假"]
    assert ENCODER.terms("COVID19疫苗") == ["疫苗", "covid19"]


def test_options_keep_words_as_written() -> None:
    plain = LexicalEncoder(LexicalSettings(stem=False, drop_stopwords=False))
    assert plain.terms("The running") == ["the", "running"]


def test_document_weights_saturate_and_normalise_by_length() -> None:
    once = ENCODER.encode_document("protein")
    thrice = ENCODER.encode_document("protein protein protein")
    long = ENCODER.encode_document("protein " + " ".join(f"w{i}" for i in range(400)))
    weight = dict(zip(once.indices, once.values, strict=True))[term_index("protein")]
    assert thrice.values[0] > weight  # more occurrences, more weight …
    assert thrice.values[0] < 3 * weight  # … but saturating (k1)
    long_weight = dict(zip(long.indices, long.values, strict=True))[term_index("protein")]
    assert long_weight < weight  # the same term counts less in a longer chunk (b)


def test_query_has_one_unit_weight_per_distinct_term() -> None:
    vector = ENCODER.encode_query("cells cell CELLS growth")
    assert list(vector.indices) == sorted({term_index("cell"), term_index("growth")})
    assert set(vector.values) == {1.0}
    assert list(vector.indices) == sorted(vector.indices)


def test_empty_text_gives_an_empty_vector() -> None:
    assert not ENCODER.encode_document("  ")
    assert ENCODER.encode_query("...") == SparseVector((), ())


def test_term_indices_are_stable_across_processes() -> None:
    # crc32 is fixed: indices written by one release must be found by the next.
    assert term_index("cell") == 1267173346
    assert 0 <= term_index("疫苗") < 2**31


@pytest.mark.parametrize("text", ["", "a", "é", "🙂", "\x00", "x" * 10_000])
def test_any_text_encodes(text: str) -> None:
    ENCODER.encode_document(text)
    ENCODER.encode_query(text)


def test_idf_power_reweights_query_terms() -> None:
    query = SparseVector((1, 2, 3), (1.0, 1.0, 1.0))
    weighted = weight_by_idf(query, {1: 4.0, 2: 1.0}, power=1.5)
    # Qdrant multiplies by IDF once more: the terms then score IDF^1.5. Term 3 has no IDF.
    assert weighted.indices == (1, 2, 3)
    assert weighted.values == pytest.approx((2.0, 1.0, 1.0))
    assert weight_by_idf(query, {1: 4.0}, power=1.0) is query


def test_a_higher_idf_power_lets_one_rare_term_outrank_two_common_ones(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    texts = ["zebrafish", "cell growth", "cell", "growth", "other", "words"]
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=ENCODER)
    store.upsert(
        [
            ChunkPoint(f"00000000-0000-0000-0000-00000000000{i}", "t", f"d{i}", "v",
                       [1.0] + [0.0] * (embedder.dimension - 1), {"text": t, "path": f"{i}.md"})
            for i, t in enumerate(texts)
        ]
    )  # fmt: skip

    def first(power: float) -> str:
        retriever = Retriever(
            store=store,
            embedder=embedder,
            lexical=ENCODER,
            reranker=NoReranker(),
            settings=RetrievalSettings(idf_power=power),
            rerank_candidates=5,
            min_score=0.0,
        )
        result = retriever.retrieve(
            tenant_id="t",
            query="zebrafish cell growth",
            top_k=2,
            options=RetrievalOptions(mode=RetrievalMode.LEXICAL),
        )
        assert ("idf_ms" in result.timings_ms) == (power != 1)
        return result.chunks[0].text

    try:
        assert first(1.0) == "cell growth"
        assert first(3.0) == "zebrafish"
    finally:
        store.close()


def test_query_term_idf_is_read_once_per_tenant_and_term_then_remembered(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=ENCODER)
    unit = [1.0] + [0.0] * (embedder.dimension - 1)
    store.upsert(
        [
            ChunkPoint(f"00000000-0000-0000-0000-00000000000{i}", tenant, f"d{i}", "v", unit,
                       {"text": text, "path": f"{i}.md"})
            for i, (tenant, text) in enumerate(
                [("a", "zebrafish cells"), ("a", "cells"), ("b", "zebrafish"), ("b", "tails")]
            )
        ]
    )  # fmt: skip
    asked: list[tuple[str, tuple[int, ...]]] = []
    real_idf = store.idf

    def recorded_idf(
        *, tenant_id: str, terms: SparseVector, principals: tuple[str, ...] | None = None
    ) -> dict[int, float]:
        asked.append((tenant_id, terms.indices))
        return real_idf(tenant_id=tenant_id, terms=terms, principals=principals)

    store.idf = recorded_idf  # type: ignore[method-assign]
    now = [0.0]
    retriever = Retriever(
        store=store,
        embedder=embedder,
        lexical=ENCODER,
        reranker=NoReranker(),
        settings=RetrievalSettings(idf_power=1.5),
        rerank_candidates=5,
        min_score=0.0,
        idf_cache=IdfCache(ttl_s=60, max_entries=100, clock=lambda: now[0]),
    )

    def search(tenant_id: str, query: str, principals: tuple[str, ...] | None = None) -> list[str]:
        result = retriever.retrieve(
            tenant_id=tenant_id, query=query, top_k=2,
            filters=SearchFilter(principals=principals),
            options=RetrievalOptions(mode=RetrievalMode.LEXICAL),
        )  # fmt: skip
        return [c.text for c in result.chunks]

    zebrafish, cells = term_index("zebrafish"), term_index("cell")
    try:
        assert search("a", "zebrafish cells")[0] == "zebrafish cells"
        assert asked == [("a", tuple(sorted((zebrafish, cells))))]
        search("a", "zebrafish cells")
        search("a", "cells")
        assert len(asked) == 1  # remembered
        # Another tenant's statistics are its own: read for it, never taken from tenant a's.
        assert search("b", "zebrafish cells") == ["zebrafish"]
        assert asked[1] == ("b", tuple(sorted((zebrafish, cells))))
        assert search("b", "cells") == []
        assert len(asked) == 2  # a term tenant b does not have is remembered as such
        now[0] = 61.0  # past the TTL: read again
        search("a", "cells")
        assert asked[2] == ("a", (cells,))
        # An end user's statistics count only what they may read: remembered apart.
        search("a", "cells", principals=("user:ann",))
        assert asked[3] == ("a", (cells,))
        search("a", "cells", principals=("user:ann", "user:ann"))
        assert len(asked) == 4
    finally:
        store.close()


def test_the_idf_cache_forgets_the_least_recently_used_beyond_its_size() -> None:
    cache = IdfCache(ttl_s=60, max_entries=2)
    cache.remember("t", [1, 2], {1: 2.0})
    assert cache.lookup("t", [1, 2]) == ({1: 2.0, 2: 0.0}, [])
    cache.remember("t", [3], {3: 1.0})
    assert cache.lookup("t", [1, 2, 3]) == ({2: 0.0, 3: 1.0}, [1])
    assert cache.lookup("u", [3]) == ({}, [3])
    off = IdfCache(ttl_s=0, max_entries=2)
    off.remember("t", [1], {1: 2.0})
    assert off.lookup("t", [1]) == ({}, [1])


def test_a_tenants_score_for_a_codename_does_not_move_when_another_tenant_uploads_it(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """The reported case: tenant A's score for a rare codename fell from 20.8 to 8.5 when tenant
    B uploaded 40 files holding it, restricted to a group. A's score is A's own BM25."""
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=ENCODER)
    unit = [1.0] + [0.0] * (embedder.dimension - 1)

    def chunk(tenant: str, n: int, text: str, **payload: object) -> ChunkPoint:
        return ChunkPoint(
            f"00000000-0000-0000-0000-{n:012d}", tenant, f"d{n}", "v", unit,
            {"text": text, "path": f"{n}.md", **payload},
        )  # fmt: skip

    mine = [chunk("a", 0, "Project Zorblax ships in spring.")] + [
        chunk("a", n, f"Meeting note {n} on the spring budget.") for n in range(1, 30)
    ]
    store.upsert(mine)
    retriever = Retriever(
        store=store,
        embedder=embedder,
        lexical=ENCODER,
        reranker=NoReranker(),
        # Read the IDF every time: a remembered value would hide a store that leaks.
        settings=RetrievalSettings(idf_power=1.5, idf_cache_ttl_s=0),
        rerank_candidates=5,
        min_score=0.0,
    )

    def score() -> float:
        result = retriever.retrieve(
            tenant_id="a", query="zorblax", top_k=5,
            options=RetrievalOptions(mode=RetrievalMode.LEXICAL),
        )  # fmt: skip
        assert [c.point_id for c in result.chunks] == [mine[0].point_id]
        return result.chunks[0].retrieval_score

    document = ENCODER.encode_document(mine[0].lexical_text())
    weight = dict(zip(document.indices, document.values, strict=True))[term_index("zorblax")]
    # BM25's IDF over A's 30 chunks, of which one holds the term, to the power 1.5.
    own = math.log(1 + (30 - 1 + 0.5) / (1 + 0.5)) ** 1.5 * weight
    try:
        before = score()
        assert before == pytest.approx(own, rel=1e-5)
        store.upsert(
            [
                chunk("b", 100 + n, f"Zorblax memo {n}.", principals=["group:finance"])
                for n in range(40)
            ]
        )
        assert score() == before  # exactly: nothing of B's weighs in A's score
        for n in range(40):
            store.delete_document(tenant_id="b", document_id=f"d{100 + n}")
        assert score() == before
    finally:
        store.close()
