from __future__ import annotations

from core.embedding import SentenceTransformerEmbedder
from generation.verify import CitationVerifier, content_tokens, lexical_support

SOURCE = (
    "The Rotterdam warehouse opened in 2019. It shipped 48,200 parcels in September. "
    "Staff turnover was low."
)


def test_content_tokens_drop_stopwords_and_use_cjk_bigrams() -> None:
    assert content_tokens("The warehouse shipped 48,200 parcels") == {
        "warehouse", "shipped", "48,200", "parcels",
    }  # fmt: skip
    assert content_tokens("仓库发货") == {"仓库", "库发", "发货"}


def test_lexical_support_is_the_share_of_claim_words_found() -> None:
    assert lexical_support("shipped 48,200 parcels", SOURCE) == 1.0
    assert lexical_support("shipped 99 parcels", SOURCE) == 2 / 3


def test_supported_claim_is_verified_with_its_span(embedder: SentenceTransformerEmbedder) -> None:
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.5, semantic_threshold=0.6)
    support = verifier.support("The Rotterdam warehouse shipped 48,200 parcels.", SOURCE)
    assert support.verified
    assert SOURCE[support.span_start : support.span_end] in (
        "It shipped 48,200 parcels in September.",
        "The Rotterdam warehouse opened in 2019. It shipped 48,200 parcels in September.",
    )


def test_unrelated_claim_is_not_verified(embedder: SentenceTransformerEmbedder) -> None:
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.5, semantic_threshold=0.6)
    support = verifier.support("Employees receive 25 days of paid vacation per year.", SOURCE)
    assert not support.verified
    assert support.lexical < 0.5
    assert not verifier.support("", SOURCE).verified
