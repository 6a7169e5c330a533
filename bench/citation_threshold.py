"""Choose the citation-verification thresholds from data: SciFact claims vs their evidence.

A SciFact query is a scientific claim; its qrels name the abstracts that hold its evidence.
Positives: (claim, evidence abstract). Negatives: (claim, the most lexically similar abstract among
500 random non-evidence abstracts) — on a nearby topic, like a wrong citation a reader would make,
but not chosen adversarially against either signal (the single most similar abstract in the whole
corpus is often a near-duplicate of the evidence).
For each threshold we report precision/recall of "verified" and pick the lexical and semantic
thresholds that maximise F1 (train split only).

    python bench/citation_threshold.py --data ../shared/data/scifact --claims 200
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from core.embedding import create_embedder
from core.settings import EmbeddingSettings
from generation.verify import CitationVerifier, content_tokens


def load(data: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    corpus = {}
    for line in (data / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = f"{row.get('title', '')}. {row['text']}".strip()
    queries = {
        row["_id"]: row["text"]
        for row in map(json.loads, (data / "queries.jsonl").read_text().splitlines())
    }
    qrels: dict[str, set[str]] = {}
    for line in (data / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(query_id, set()).add(doc_id)
    return corpus, queries, qrels


def best_f1(pos: list[float], neg: list[float]) -> tuple[float, float, float, float]:
    best = (0.0, 0.0, 0.0, 0.0)
    for threshold in sorted(set(pos + neg)):
        tp = sum(s >= threshold for s in pos)
        fp = sum(s >= threshold for s in neg)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / len(pos)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best[0]:
            best = (f1, threshold, precision, recall)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="Embedding model.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/citation-threshold.json"))
    args = parser.parse_args()

    corpus, queries, qrels = load(args.data)
    claim_ids = sorted(q for q in qrels if q in queries)
    rng = random.Random(13)
    rng.shuffle(claim_ids)
    claim_ids = claim_ids[: args.claims]
    doc_tokens = {doc_id: content_tokens(text) for doc_id, text in corpus.items()}

    embedder = create_embedder(EmbeddingSettings(model=args.model))
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=1.1, semantic_threshold=1.1)
    positives, negatives = [], []
    started = time.perf_counter()
    for query_id in claim_ids:
        claim = queries[query_id]
        claim_tokens = content_tokens(claim)
        evidence = sorted(qrels[query_id])[0]
        pool = rng.sample([d for d in corpus if d not in qrels[query_id]], 500)
        negative = max(pool, key=lambda d: len(claim_tokens & doc_tokens[d]))
        positives.append(verifier.support(claim, corpus[evidence]))
        negatives.append(verifier.support(claim, corpus[negative]))
    elapsed = time.perf_counter() - started

    lex = best_f1([s.lexical for s in positives], [s.lexical for s in negatives])
    sem = best_f1([s.semantic for s in positives], [s.semantic for s in negatives])
    # The rule used in production: verified if either signal clears its threshold. The semantic
    # threshold is the best single-signal one; the lexical one is searched with it fixed, so that
    # lexical support only adds near-verbatim claims the embedding missed.
    either = (0.0, 1.01, 0.0, 0.0)
    for lexical_threshold in [x / 20 for x in range(4, 21)]:
        tp = sum(s.lexical >= lexical_threshold or s.semantic >= sem[1] for s in positives)
        fp = sum(s.lexical >= lexical_threshold or s.semantic >= sem[1] for s in negatives)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / len(positives)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > either[0]:
            either = (f1, lexical_threshold, precision, recall)
    either_f1, either_lexical, either_precision, either_recall = either
    result = {
        "model": args.model,
        "claims": len(claim_ids),
        "lexical_threshold": lex[1],
        "lexical_f1": round(lex[0], 4),
        "lexical_precision": round(lex[2], 4),
        "lexical_recall": round(lex[3], 4),
        "semantic_threshold": round(sem[1], 4),
        "semantic_f1": round(sem[0], 4),
        "semantic_precision": round(sem[2], 4),
        "semantic_recall": round(sem[3], 4),
        "rule": "verified if lexical >= rule_lexical_threshold or semantic >= semantic_threshold",
        "rule_lexical_threshold": either_lexical,
        "rule_precision": round(either_precision, 4),
        "rule_recall": round(either_recall, 4),
        "rule_f1": round(either_f1, 4),
        "seconds": round(elapsed, 1),
        "command": (
            f"python bench/citation_threshold.py --data {args.data} --claims {args.claims} "
            f"--model {args.model} --out {args.out}"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| signal | threshold | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    print(f"| lexical | {lex[1]:.3f} | {lex[2]:.3f} | {lex[3]:.3f} | {lex[0]:.3f} |")
    print(f"| semantic | {sem[1]:.3f} | {sem[2]:.3f} | {sem[3]:.3f} | {sem[0]:.3f} |")
    print(
        f"| rule (lexical ≥ {either_lexical:.2f} or semantic ≥ {sem[1]:.3f}) | — | "
        f"{either_precision:.3f} | {either_recall:.3f} | {either_f1:.3f} |"
    )
    _plot(positives, negatives, either_lexical, sem[1], args.out.with_suffix(".png"))


def _plot(positives: list, negatives: list, lex_t: float, sem_t: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(
        [s.lexical for s in positives], [s.semantic for s in positives], s=8, label="evidence"
    )
    ax.scatter(
        [s.lexical for s in negatives], [s.semantic for s in negatives], s=8, label="hard negative"
    )
    ax.axvline(lex_t, color="grey", linestyle="--")
    ax.axhline(sem_t, color="grey", linestyle=":")
    ax.set_xlabel("lexical support (share of claim words in span)")
    ax.set_ylabel("semantic support (cosine)")
    ax.set_title("SciFact claims: citation support (train split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
