"""What the answer evaluation and the evidence-threshold bench read from a BEIR-format set."""

from __future__ import annotations

import json
from pathlib import Path

from api.eval_answers import load_qa


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
