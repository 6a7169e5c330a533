"""Replay hybrid retrieval over a stored evaluation index in numpy, to tune fusion in seconds.

`ragkb eval retrieval --workdir W` leaves W with the embedded Qdrant store of a BEIR corpus. This
reads its points back (dense vectors and payloads), recomputes the lexical side with ragkb's own
encoder and Qdrant's IDF formula over the evaluation tenant's points (ragkb counts IDF per
tenant, so other tenants in the store would not change it), and scores DBSF fusion as Qdrant
does it (each ranking's top `candidates` normalised by mean ± 3 sample standard deviations, then
summed), folding chunks into documents as the evaluation does. On SciFact train it reproduces
the product's BM25, dense and DBSF figures to the fourth decimal; confirm a winner with one
`ragkb eval retrieval` run.

    python bench/fusion_replay.py --workdir /tmp/scifact-work --corpus ../shared/data/scifact \
        --split train --idf-power 1 1.5 --candidates 100 400
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from api.eval_retrieval import (
    BeirSet,
    document_id_of,
    load_beir,
    ndcg_at,
    recall_at,
    reciprocal_rank,
)
from core.embedding import create_embedder
from core.lexical import LexicalEncoder
from core.settings import ChunkingSettings, EmbeddingSettings, LexicalSettings
from core.vectorstore import (
    DENSE_VECTOR,
    DOCUMENT_FIELD,
    TENANT_FIELD,
    VERSION_FIELD,
    ChunkPoint,
    with_lexical_context,
)
from core.vectorstore.edge import EdgeVectorStore

Matrix = np.ndarray[Any, np.dtype[np.float32]]
Index = np.ndarray[Any, np.dtype[np.intp]]


def stored_points(workdir: Path, model: str) -> list[ChunkPoint]:
    tenant = json.loads((workdir / "eval-tenant.json").read_text())["tenant_id"]
    lexical = LexicalEncoder(LexicalSettings())
    folder = workdir / "qdrant" / f"chunks__{model.lower()}"
    store = EdgeVectorStore(path=folder, dimension=384, lexical=lexical)
    points: list[ChunkPoint] = []
    offset: Any = None
    while True:
        records, offset = store.shard.scroll(
            qe.ScrollRequest(
                limit=1000, offset=offset, with_payload=True, with_vector=[DENSE_VECTOR]
            )
        )
        for r in records:
            p = dict(r.payload)
            if p[TENANT_FIELD] == tenant:
                points.append(
                    ChunkPoint(str(r.id), tenant, p[DOCUMENT_FIELD], p[VERSION_FIELD],
                               list(r.vector[DENSE_VECTOR]), p)
                )  # fmt: skip
        if offset is None:
            break
    store.close()
    return points


def lexical_scores(
    points: list[ChunkPoint], queries: list[str], settings: LexicalSettings, idf_power: float
) -> Matrix:
    """Queries x chunks BM25 scores with Qdrant's IDF, ln(1 + (N - df + 0.5) / (df + 0.5))."""
    encoder = LexicalEncoder(settings)
    postings: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    k1, b = settings.k1, settings.b
    for i, point in enumerate(points):
        counts = Counter(encoder.terms(point.lexical_text()))
        norm = k1 * (1 - b + b * sum(counts.values()) / settings.avg_terms)
        for term, tf in counts.items():
            postings[term][0].append(i)
            postings[term][1].append(tf * (k1 + 1) / (tf + norm))
    n = len(points)
    scores: Matrix = np.zeros((len(queries), n), dtype=np.float32)
    for q, query in enumerate(queries):
        for term in set(encoder.terms(query)):
            if term in postings:
                chunks, weights = postings[term]
                df = len(chunks)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5)) ** idf_power
                scores[q, chunks] += idf * np.asarray(weights, dtype=np.float32)
    return scores


def _top(row: Matrix, k: int) -> Index:
    k = min(k, len(row))
    idx = np.argpartition(-row, k - 1)[:k]
    return idx[np.argsort(-row[idx], kind="stable")]


def dbsf(branches: list[tuple[Matrix, bool]], query: int, candidates: int, limit: int) -> list[int]:
    """Qdrant's DBSF for one query; a sparse ranking holds only chunks sharing a term."""
    total: dict[int, float] = defaultdict(float)
    for scores, sparse in branches:
        row = scores[query]
        idx = _top(row, candidates)
        if sparse:
            idx = idx[row[idx] > 0]
        s = row[idx]
        if len(s) < 2:
            normalised = np.full(len(s), 0.5)
        else:
            mean, std = float(s.mean()), float(s.std(ddof=1))
            low, high = mean - 3 * std, mean + 3 * std
            normalised = (s - low) / (high - low) if high > low else np.full(len(s), 0.5)
        for j, v in zip(idx, normalised, strict=True):
            total[int(j)] += float(v)
    return [j for j, _ in sorted(total.items(), key=lambda kv: -kv[1])[:limit]]


def evaluate(beir: BeirSet, query_ids: list[str], rankings: list[list[str]]) -> dict[str, float]:
    per_query = [
        (ndcg_at(r, beir.qrels[q], 10), recall_at(r, beir.qrels[q], 100),
         reciprocal_rank(r, beir.qrels[q]))
        for q, r in zip(query_ids, rankings, strict=True)
    ]  # fmt: skip
    return {
        name: round(statistics.fmean(row[i] for row in per_query), 4)
        for i, name in enumerate(("ndcg@10", "recall@100", "mrr"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--idf-power", type=float, nargs="+", default=[1.0, 1.5])
    parser.add_argument("--candidates", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--neighbours", type=int, default=ChunkingSettings().lexical_neighbours)
    parser.add_argument("--avg-terms", type=float, default=LexicalSettings().avg_terms)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    beir = load_beir(args.corpus, args.split)
    query_ids = sorted(beir.queries)
    queries = [beir.queries[q] for q in query_ids]
    by_document: dict[str, list[ChunkPoint]] = defaultdict(list)
    for point in stored_points(args.workdir, args.model):
        by_document[point.document_id].append(point)
    points = [
        p for group in by_document.values() for p in with_lexical_context(group, args.neighbours)
    ]
    documents = [document_id_of(str(p.payload.get("path", ""))) for p in points]
    terms = LexicalEncoder(LexicalSettings()).terms
    mean_terms = statistics.fmean(len(terms(p.lexical_text())) for p in points)
    print(f"{len(points)} points, {mean_terms:.1f} lexical terms each on average")
    embedder = create_embedder(EmbeddingSettings(model=args.model))
    query_vectors = np.asarray(embedder.embed_passages(queries), dtype=np.float32)
    dense = query_vectors @ np.asarray([p.dense_vector for p in points], dtype=np.float32).T

    def fold(chunks: list[int]) -> list[str]:
        return list(dict.fromkeys(documents[j] for j in chunks))

    dense_only = [fold([int(j) for j in _top(dense[i], 100)]) for i in range(len(queries))]
    results: list[dict[str, Any]] = [{"config": "dense", **evaluate(beir, query_ids, dense_only)}]
    for power in args.idf_power:
        lexical = lexical_scores(points, queries, LexicalSettings(avg_terms=args.avg_terms), power)
        lexical_only = [fold([int(j) for j in _top(lexical[i], 100) if lexical[i][j] > 0])
                        for i in range(len(queries))]  # fmt: skip
        results.append(
            {"config": f"lexical idf^{power}", **evaluate(beir, query_ids, lexical_only)}
        )
        for candidates in args.candidates:
            fused = [fold(dbsf([(dense, False), (lexical, True)], i, candidates, 100))
                     for i in range(len(queries))]  # fmt: skip
            config = f"dbsf idf^{power} candidates {candidates}"
            results.append({"config": config, **evaluate(beir, query_ids, fused)})
    print("| config | nDCG@10 | R@100 | MRR |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {r['ndcg@10']} | {r['recall@100']} | {r['mrr']} |")
    if args.out:
        report = {
            "command": shlex.join(["python", "bench/fusion_replay.py", *sys.argv[1:]]),
            "neighbours": args.neighbours,
            "avg_terms": args.avg_terms,
            "points": len(points),
            "mean_terms": round(mean_terms, 1),
            "queries": len(queries),
            "results": results,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
