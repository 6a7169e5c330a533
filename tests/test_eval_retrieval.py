"""The retrieval evaluation: metrics by trec_eval's definitions, and the harness end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.eval_retrieval import (
    config_from_spec,
    fold_to_documents,
    ndcg_at,
    recall_at,
    reciprocal_rank,
)


def test_metrics_match_hand_computed_values() -> None:
    relevant = {"a": 1, "b": 1}
    assert ndcg_at(["a", "b", "c"], relevant, 10) == pytest.approx(1.0)
    # One relevant document at rank 2 of two relevant: (1/log2 3) / (1 + 1/log2 3).
    assert ndcg_at(["x", "a"], relevant, 10) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    assert ndcg_at(["x", "y"], relevant, 10) == 0.0
    assert ndcg_at(["b"], {"a": 2, "b": 1}, 10) == pytest.approx(1 / (2 + 1 / math.log2(3)))
    assert recall_at(["a", "x"], relevant, 1) == 0.5
    assert recall_at(["x", "a", "b"], relevant, 2) == 0.5
    assert reciprocal_rank(["x", "y", "b"], relevant) == pytest.approx(1 / 3)
    assert reciprocal_rank([], relevant) == 0.0


def test_chunks_fold_into_documents_at_their_best_rank() -> None:
    assert fold_to_documents(["corpus/7.md", "corpus/3.md", "corpus/7.md", "corpus/1.md"]) == [
        "7", "3", "1",
    ]  # fmt: skip


def test_config_specs_parse_settings() -> None:
    config = config_from_spec("k20=hybrid,rerank,rrf_k=20,lexical_weight=1.5,fusion=dbsf")
    assert (config.name, config.mode, config.rerank) == ("k20", "hybrid", True)
    assert config.overrides == {"rrf_k": 20, "lexical_weight": 1.5, "fusion": "dbsf"}


def _beir(folder: Path) -> Path:
    documents = {
        "d1": ("Parcel logistics", "The Rotterdam warehouse shipped 48,200 parcels in September."),
        "d2": ("Vacation policy", "Employees receive 25 days of paid vacation per year."),
        "d3": ("Password rules", "Passwords are rotated every ninety days by the helpdesk."),
        "d4": ("Travel", "Economy class is booked for flights shorter than six hours."),
    }
    queries = {"q1": "how many parcels were shipped", "q2": "paid vacation days", "q3": "helpdesk"}
    qrels = [("q1", "d1"), ("q2", "d2"), ("q3", "d3")]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in documents.items()
        )
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": t}) + "\n" for k, t in queries.items())
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
    )
    return folder


def test_eval_retrieval_runs_through_the_real_paths(tmp_path: Path) -> None:
    corpus = _beir(tmp_path / "beir")
    out = tmp_path / "out" / "r.json"
    args = ["eval", "retrieval", "--corpus", str(corpus), "--workdir", str(tmp_path / "work"),
            "--config", "k5=hybrid,rrf_k=5", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["documents"] == 4
    assert report["queries"] == 3
    assert report["ingest_seconds"] is not None
    configs = {r["config"]: r for r in report["results"]}
    assert set(configs) == {"lexical (BM25)", "dense", "hybrid (RRF)", "hybrid (DBSF)", "k5"}
    for row in configs.values():
        assert row["queries"] == 3
        assert row["ndcg@10"] == pytest.approx(1.0), row
        assert row["p50_ms"] > 0
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| hybrid (RRF) |" in out.with_suffix(".md").read_text()

    # A second run reuses the index in the work folder instead of ingesting again.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["ingest_seconds"] is None
