"""What the answer evaluation and the evidence-threshold bench read from a BEIR-format set."""

from __future__ import annotations

import json
from pathlib import Path

from api.eval_answers import evidence_rates, evidence_rows, load_qa
from retrieval.evidence import EvidenceThresholds


def _write_set(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Depot", "text": "Rotterdam shipped 48,200 parcels."},
        {"_id": "d2", "text": "No title here."},
    ]
    queries = [
        {"_id": "q1", "text": "How many parcels?", "metadata": {"answers": ["48,200"]}},
        {"_id": "q2", "text": "A claim without an answer.", "metadata": {}},
        {"_id": "q3", "text": "No gold passage.", "metadata": {"answers": ["x"]}},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries))
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq2\td1\t0\n"
    )
    return folder


def test_questions_need_answers_and_a_gold_passage(tmp_path: Path) -> None:
    passages, items = load_qa(_write_set(tmp_path))
    assert passages == {"d1": "Depot\n\nRotterdam shipped 48,200 parcels.", "d2": "No title here."}
    assert [(q.query_id, q.answers, q.gold_doc_ids) for q in items] == [("q1", ["48,200"], {"d1"})]


def test_a_retrieval_set_keeps_questions_without_answers(tmp_path: Path) -> None:
    _, items = load_qa(_write_set(tmp_path), require_answers=False)
    # q2's zero-score pair is not gold; q3 has no gold passage at all.
    assert [(q.query_id, q.gold_doc_ids) for q in items] == [("q1", {"d1"}), ("q2", {"d2"})]


def test_evidence_rows_index_like_the_pipeline_and_keep_every_signal(tmp_path: Path) -> None:
    folder = _write_set(tmp_path / "set")
    rows = evidence_rows(
        folder, "all-MiniLM-L6-v2", sample=2, absent_share=0.0, distractors=0, top_k=2,
        seed=1, general=["Who won the 2014 FIFA World Cup?"],
    )  # fmt: skip
    by_id = {r["query_id"]: r for r in rows}
    assert set(by_id) == {"q1", "q2", "general-0"}
    assert by_id["general-0"]["absent"]
    assert by_id["general-0"]["general"]
    parcels = by_id["q1"]["chunks"]
    # dense, coverage, gold, fused score, best sentence's cosine, best sentence's coverage
    assert all(len(chunk) == 6 for row in rows for chunk in row["chunks"])
    gold = [chunk for chunk in parcels if chunk[2]]
    assert gold, parcels
    assert gold[0][0] == max(chunk[0] for chunk in parcels)
    assert gold[0][4] >= gold[0][0] - 0.2  # the passage's one sentence carries its meaning
    refused = evidence_rates(rows, EvidenceThresholds(min_dense=0.0, min_coverage=0.5))
    assert refused["general_abstained"] == 1.0
