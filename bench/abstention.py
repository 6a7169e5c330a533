"""Calibrate "not in the sources" (the evidence gate) per embedding model, and measure it.

For each corpus, a sample of questions goes through the real ingest path into a throw-away
tenant; the gold passages of a share of them are left out ("absent": the right answer is "not in
the sources"), and general-knowledge questions that the corpus cannot answer
(`bench/data/general-questions-en.json`, written before any measurement) are added to the absent
ones of an English corpus. Each question is retrieved as `/v1/query` retrieves it (hybrid, the
answer's top_k, evidence gate off) and every retrieved chunk's two signals are kept: its dense
cosine and the question's term coverage (retrieval/evidence.py).

Thresholds are chosen on a random half of the questions (calibration) and reported on the other
half (held out) and on all: the pair (min dense, min coverage) that refuses the most absent
questions while keeping evidence for at least `--keep` of the answerable ones; the dense
threshold alone is reported beside it. Several corpora for one model are calibrated together
(one pair per model must serve them all).

    python bench/abstention.py --model all-MiniLM-L6-v2 --corpus ../shared/data/scifact
    python bench/abstention.py --model multilingual-e5-small --corpus ../shared/data/scifact \
        --corpus ../shared/data/cmrc2018-zh
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from api.eval_answers import Row, evidence_rates, evidence_rows
from retrieval.evidence import EvidenceThresholds

GENERAL = Path("bench/data/general-questions-en.json")


def calibrate(rows: list[Row], keep: float, coverage_on: bool) -> EvidenceThresholds:
    """The thresholds that abstain most on `rows` (mean over corpora) while keeping evidence
    for `keep` of the answerable questions of every corpus."""
    corpora = sorted({r["corpus"] for r in rows})
    by_corpus = {c: [r for r in rows if r["corpus"] == c] for c in corpora}
    dense_values = sorted({d for r in rows for d, _, _ in r["chunks"]} | {0.0})
    coverages = [i / 50 for i in range(51)] if coverage_on else [0.0]
    best: tuple[float, float, EvidenceThresholds] | None = None
    # Few distinct candidates matter: a grid over dense quantiles keeps this quick.
    step = max(1, len(dense_values) // 300)
    for min_dense in dense_values[::step]:
        for min_coverage in coverages:
            thresholds = EvidenceThresholds(min_dense, min_coverage)
            measured = [evidence_rates(by_corpus[c], thresholds) for c in corpora]
            kept = [float(m["answerable_kept"]) for m in measured]
            if min(kept) < keep:
                continue
            abstained = sum(float(m["absent_abstained"]) for m in measured) / len(measured)
            key = (abstained, sum(kept) / len(kept))
            if best is None or key > best[:2]:
                best = (*key, thresholds)
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
    for name, coverage_on in (("dense_only", False), ("dense_and_coverage", True)):
        thresholds = calibrate(calibration, args.keep, coverage_on)
        results[name] = {
            "min_dense": round(thresholds.min_dense, 4),
            "min_coverage": thresholds.min_coverage,
            "held_out": {
                c.name: evidence_rates([r for r in held_out if r["corpus"] == c.name], thresholds)
                for c in corpora
            },
            "all": {
                c.name: evidence_rates([r for r in rows if r["corpus"] == c.name], thresholds)
                for c in corpora
            },
        }
    command = f"python bench/abstention.py --model {args.model} " + " ".join(
        f"--corpus {c}" for c in corpora
    )
    command += (
        f" --questions {args.questions} --distractors {args.distractors} --seed {args.seed}"
        f" --keep {args.keep}"
    )
    out.write_text(
        json.dumps({"model": args.model, "command": command, **results, "rows": rows}, indent=1)
        + "\n"
    )
    print(f"{args.model}: calibrated on half the questions, figures on the held-out half")
    print("| rule | min dense | min coverage | corpus | answerable kept | gold kept | "
          "absent abstained | general abstained |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        for corpus_name, r in result["held_out"].items():
            print(
                f"| {name} | {result['min_dense']} | {result['min_coverage']} | {corpus_name} | "
                f"{r['answerable_kept']} | {r['answerable_gold_kept']} | {r['absent_abstained']} "
                f"| {r['general_abstained']} |"
            )


if __name__ == "__main__":
    main()
