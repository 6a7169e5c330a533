"""Calibrate "not in the sources" (the evidence gate) per embedding model, and measure it.

For each corpus, a sample of questions' passages is indexed into a throw-away tenant; the gold
passages of a share of them are left out ("absent": the right answer is "not in the sources"),
and general-knowledge questions that the corpus cannot answer (`bench/data/general-questions-
en.json`, written before any measurement) are added to the absent ones of an English corpus.
Each question is retrieved as `/v1/query` retrieves it (hybrid, the answer's top_k, evidence
gate off) and every retrieved chunk's signals are kept: its dense cosine, the question's term
coverage, its fused score, and its best sentence's dense cosine and coverage
(retrieval/evidence.py). Passages are indexed in-process as the ingest pipeline indexes them
(`api.eval_answers.index_passages`: same parse, chunks, vectors and payload).

Thresholds are chosen on a random half of the questions (calibration) and reported on the other
half (held out) and on all, for each rule of `RULES` (dense alone; dense and coverage; dense,
coverage and best sentence): the thresholds that refuse the most absent questions while keeping
evidence for at least `--keep` of the answerable ones. The configured defaults are reported on
the same halves. Several corpora for one model are calibrated together
(one pair per model must serve them all).

    python bench/abstention.py --model all-MiniLM-L6-v2 --corpus ../shared/data/scifact \
        --questions 300 --absent-share 0.4 --distractors 200 --seed 11 --keep 0.9
    python bench/abstention.py --model multilingual-e5-small --corpus ../shared/data/scifact \
        --questions 200 --absent-share 0.4 --distractors 200 --seed 11 --keep 0.9

The printed tables of the committed results are in bench/results/abstention-*.md.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from api.eval_answers import Row, chunk_scores, evidence_rates, evidence_rows
from core.settings import Settings
from retrieval.evidence import EvidenceThresholds

GENERAL = Path("bench/data/general-questions-en.json")


# The rules compared: which of the three signals each may use (retrieval/evidence.py).
RULES = {
    "dense_only": ("dense",),
    "dense_and_coverage": ("dense", "coverage"),
    "dense_coverage_sentence": ("dense", "coverage", "sentence"),
}


def _signals(rows: list[Row]) -> np.ndarray:
    """(questions, top_k, 3) array of each chunk's dense, coverage and sentence scores; a
    missing chunk scores -inf (it clears nothing)."""
    width = max((len(r["chunks"]) for r in rows), default=1) or 1
    out = np.full((len(rows), width, 3), -np.inf)
    for i, row in enumerate(rows):
        for j, chunk in enumerate(row["chunks"]):
            out[i, j] = [s if s is not None else np.inf for s in chunk_scores(chunk)]
    return out


def _grid(values: np.ndarray, count: int) -> list[float]:
    finite = values[np.isfinite(values)]
    return sorted({0.0, *np.quantile(finite, np.linspace(0, 1, count)).round(4).tolist()})


def calibrate(rows: list[Row], keep: float, signals: tuple[str, ...]) -> EvidenceThresholds:
    """The thresholds on `signals` that abstain most on `rows` (mean over corpora) while
    keeping evidence for `keep` of the answerable questions of every corpus."""
    corpora = sorted({r["corpus"] for r in rows})
    scores = _signals(rows)
    answerable = np.array([not r["absent"] for r in rows])
    corpus_of: np.ndarray = np.array([r["corpus"] for r in rows])
    dense = _grid(scores[..., 0], 60) if "dense" in signals else [0.0]
    coverages = [i / 50 for i in range(51)] if "coverage" in signals else [0.0]
    sentences = _grid(scores[..., 2], 30) if "sentence" in signals else [0.0]
    best: tuple[float, float, EvidenceThresholds] | None = None
    for min_dense in dense:
        dense_ok = scores[..., 0] >= min_dense
        for min_sentence in sentences:
            both = dense_ok & (scores[..., 2] >= min_sentence)
            for min_coverage in coverages:
                found = np.asarray((both & (scores[..., 1] >= min_coverage)).any(axis=1))
                kept, abstained = [], []
                for corpus in corpora:
                    mine = corpus_of == corpus
                    kept.append(found[mine & answerable].mean())
                    abstained.append((~found[mine & ~answerable]).mean())
                if min(kept) < keep:
                    continue
                key = (float(np.mean(abstained)), float(np.mean(kept)))
                if best is None or key > best[:2]:
                    best = (*key, EvidenceThresholds(min_dense, min_coverage, min_sentence))
    assert best is not None
    return best[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--corpus", type=Path, action="append")
    parser.add_argument("--questions", type=int, default=160)
    parser.add_argument("--absent-share", type=float, default=0.3)
    parser.add_argument("--distractors", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--keep", type=float, default=0.92)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--rows", type=Path, help="Calibrate again on the rows of an earlier result file."
    )
    args = parser.parse_args()
    corpora = args.corpus or [Path("../shared/data/scifact")]
    out = args.out or Path(f"bench/results/abstention-{args.model}.json")

    rows: list[Row] = json.loads(args.rows.read_text())["rows"] if args.rows else []
    for corpus in [] if args.rows else corpora:
        rows += evidence_rows(
            corpus, args.model, sample=args.questions, absent_share=args.absent_share,
            distractors=args.distractors, top_k=args.top_k, seed=args.seed,
            general=json.loads(GENERAL.read_text())["questions"],
        )  # fmt: skip
    rng = random.Random(args.seed)
    calibration_ids = {id(r) for r in rows if rng.random() < 0.5}
    calibration = [r for r in rows if id(r) in calibration_ids]
    held_out = [r for r in rows if id(r) not in calibration_ids]

    results: dict[str, Any] = {}
    for name, signals in RULES.items():
        thresholds = calibrate(calibration, args.keep, signals)
        results[name] = {
            "min_dense": round(thresholds.min_dense, 4),
            "min_coverage": thresholds.min_coverage,
            "min_sentence": round(thresholds.min_sentence, 4),
            "held_out": {
                c.name: evidence_rates([r for r in held_out if r["corpus"] == c.name], thresholds)
                for c in corpora
            },
            "all": {
                c.name: evidence_rates([r for r in rows if r["corpus"] == c.name], thresholds)
                for c in corpora
            },
        }
    configured = Settings().retrieval
    current = EvidenceThresholds(
        configured.min_score_for(args.model),
        configured.min_coverage_for(args.model),
        configured.min_sentence_for(args.model),
    )
    results["configured_default"] = {
        "min_dense": current.min_dense,
        "min_coverage": current.min_coverage,
        "min_sentence": current.min_sentence,
        "held_out": {
            c.name: evidence_rates([r for r in held_out if r["corpus"] == c.name], current)
            for c in corpora
        },
        "all": {
            c.name: evidence_rates([r for r in rows if r["corpus"] == c.name], current)
            for c in corpora
        },
    }
    command = f"python bench/abstention.py --model {args.model} " + " ".join(
        f"--corpus {c}" for c in corpora
    )
    command += (
        f" --questions {args.questions} --absent-share {args.absent_share}"
        f" --distractors {args.distractors} --seed {args.seed} --keep {args.keep}"
    )
    out.write_text(
        json.dumps({"model": args.model, "command": command, **results, "rows": rows}, indent=1)
        + "\n"
    )
    print(f"{args.model}: calibrated on half the questions, figures on the held-out half")
    print("| rule | min dense | min coverage | min sentence | corpus | answerable kept | "
          "gold kept | absent abstained | general abstained |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        for corpus_name, r in result["held_out"].items():
            print(
                f"| {name} | {result['min_dense']} | {result['min_coverage']} | "
                f"{result['min_sentence']} | {corpus_name} | "
                f"{r['answerable_kept']} | {r['answerable_gold_kept']} | {r['absent_abstained']} "
                f"| {r['general_abstained']} |"
            )


if __name__ == "__main__":
    main()
