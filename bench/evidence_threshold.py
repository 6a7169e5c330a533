"""Choose the evidence threshold (RAGKB_RETRIEVAL__MIN_SCORE) per embedding model from data.

Questions whose gold passage is indexed should find evidence; questions whose passage was left out
should not (then ragkb answers "not in the sources" without calling the reader). The top-1 dense
score of each question is measured through the real ingest path, and the threshold that best
separates the two groups (balanced accuracy) is reported, with the thresholds that keep 90% and 95%
of the answerable questions' evidence. The question sample is drawn with a
different seed from `ragkb eval answers`, so the answer evaluation is not tuned on.

    python bench/evidence_threshold.py --corpus ../shared/data/cmrc2018-zh \
        --model multilingual-e5-small
    python bench/evidence_threshold.py --corpus ../shared/data/scifact --model all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from api.eval_answers import ingest_passages, load_qa, sample_questions, throwaway_service
from core.settings import EmbeddingSettings, ReaderSettings
from core.vectorstore import HybridQuery


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/cmrc2018-zh"))
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--absent-share", type=float, default=0.3)
    parser.add_argument("--distractors", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(f"bench/results/evidence-threshold-{args.model}.json")

    # Only the gold passages matter here, so a retrieval set without reference answers serves.
    passages, items = load_qa(args.corpus, require_answers=False)
    picked = sample_questions(
        passages, items, sample=args.questions, absent_share=args.absent_share,
        distractors=args.distractors, rng=random.Random(args.seed),
    )  # fmt: skip
    present = [q for q in picked.questions if q not in picked.absent]
    with throwaway_service(
        embedding=EmbeddingSettings(model=args.model), reader=ReaderSettings(managed=False)
    ) as service:
        ingest_passages(service, {d: passages[d] for d in picked.passage_ids})

        def top_score(question: str) -> float:
            vector = service.runtime.embedder.embed_query(question)
            hits = service.runtime.store.search(
                tenant_id=service.tenant_id, query=HybridQuery(limit=1, dense=vector)
            )
            return hits[0].score if hits else 0.0

        present_scores = [top_score(q.question) for q in present]
        absent_scores = [top_score(q.question) for q in picked.absent]

    best = (0.0, 0.0, 0.0, 0.0)
    for threshold in sorted(set(present_scores + absent_scores)):
        kept = sum(s >= threshold for s in present_scores) / len(present_scores)
        abstained = sum(s < threshold for s in absent_scores) / len(absent_scores)
        balanced = (kept + abstained) / 2
        if balanced > best[0]:
            best = (balanced, threshold, kept, abstained)
    # The highest threshold that still keeps `share` of the answerable questions' evidence.
    by_share = {}
    for share in (0.9, 0.95):
        threshold = sorted(present_scores)[int(len(present_scores) * (1 - share))]
        abstained = sum(s < threshold for s in absent_scores) / len(absent_scores)
        by_share[f"keep_{share}"] = {
            "threshold": round(threshold, 4),
            "absent_abstained": round(abstained, 4),
        }
    result = {
        "model": args.model,
        "questions": len(picked.questions),
        "absent": len(picked.absent),
        "threshold": round(best[1], 4),
        "present_kept": round(best[2], 4),
        "absent_abstained": round(best[3], 4),
        "balanced_accuracy": round(best[0], 4),
        **by_share,
        "present_scores": [round(x, 4) for x in sorted(present_scores)],
        "absent_scores": [round(x, 4) for x in sorted(absent_scores)],
        "command": (
            f"python bench/evidence_threshold.py --corpus {args.corpus} --model {args.model} "
            f"--questions {args.questions} --seed {args.seed}"
        ),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| model | threshold | present kept | absent abstained |\n|---|---|---|---|")
    print(f"| {args.model} | {best[1]:.4f} | {best[2]:.3f} | {best[3]:.3f} |")
    for name, row in by_share.items():
        print(f"{name}: threshold {row['threshold']}, absent abstained {row['absent_abstained']}")
    _plot(present_scores, absent_scores, best[1], out.with_suffix(".png"), args.model)


def _plot(
    present: list[float], absent: list[float], threshold: float, path: Path, model: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(present, bins=30, alpha=0.6, label="gold passage indexed")
    ax.hist(absent, bins=30, alpha=0.6, label="gold passage absent")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel(f"top-1 dense score ({model})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
