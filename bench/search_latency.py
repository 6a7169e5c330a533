"""`/v1/search` latency against the bare components, at growing collection sizes.

For each size, synthetic chunks (random unit vectors, text drawn from a word list, so the BM25
side has real postings) are spread over `--tenants` tenants in one embedded collection; the
measured tenant holds its share. The same questions are then timed two ways, interleaved:
- ragkb: `POST /v1/search` through the in-process app (auth, rate limit, audit row, query
  embedding, lexical encoding, the hybrid query, response);
- bare: the encoder's `encode` and qdrant-edge's `query` with the same prefetches and tenant
  filter, called directly.
Quality is measured on real data by `ragkb eval retrieval`; here only cost matters.

    python bench/search_latency.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from api.eval_answers import throwaway_service
from core.lexical import LexicalEncoder
from core.settings import LimitSettings, ReaderSettings, RetrievalSettings
from core.tenancy import create_tenant
from core.vectorstore import DENSE_VECTOR, SPARSE_VECTOR, TENANT_FIELD, ChunkPoint
from core.vectorstore.edge import EdgeVectorStore

_WORDS = (
    "protein cell gene expression tumor immune response patient therapy risk dose trial mouse "
    "receptor signal pathway infection virus vaccine antibody blood brain heart liver kidney "
    "insulin glucose obesity diet exercise sleep stress hormone estrogen bone muscle nerve "
    "mutation cancer breast lung colon prostate survival mortality cohort incidence screening"
)
VOCABULARY = tuple(_WORDS.split())


def synthetic_points(tenant_ids: list[str], count: int, rng: np.random.Generator) -> Any:
    words = np.array(VOCABULARY)
    for start in range(0, count, 2000):
        size = min(2000, count - start)
        vectors = rng.standard_normal((size, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = []
        for i in range(size):
            n = start + i
            text = " ".join(rng.choice(words, 40))
            batch.append(
                ChunkPoint(
                    point_id=f"00000000-0000-4000-8000-{n:012d}",
                    tenant_id=tenant_ids[n % len(tenant_ids)],
                    document_id=f"doc-{n // 4}",
                    version="v1",
                    dense_vector=vectors[i].tolist(),
                    payload={"path": f"synthetic/{n // 4}.md", "text": text, "chunk_index": n % 4},
                )
            )
        yield batch


def bare_search(
    store: EdgeVectorStore, encoder: Any, lexical: LexicalEncoder, tenant_id: str, query: str
) -> int:
    dense = encoder.encode([query], normalize_embeddings=True)[0].tolist()
    sparse = lexical.encode_query(query)
    tenant = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant_id))])
    request = qe.QueryRequest(
        limit=10,
        prefetches=[
            qe.Prefetch(
                limit=100, query=qe.Query.Nearest(dense, using=DENSE_VECTOR), filter=tenant
            ),
            qe.Prefetch(
                limit=100,
                query=qe.Query.Nearest(
                    qe.SparseVector(list(sparse.indices), list(sparse.values)), using=SPARSE_VECTOR
                ),
                filter=tenant,
            ),
        ],
        query=qe.Fusion.Rrf(k=60, weights=[1.0, 1.0]),
        filter=tenant,
        with_payload=True,
    )
    return len(store.shard.query(request))


def measure(size: int, tenants: int, queries: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    unlimited = LimitSettings(queries_per_minute=10**9, query_burst=10**9)
    with throwaway_service(
        reader=ReaderSettings(managed=False), limits=unlimited, retrieval=RetrievalSettings()
    ) as service:
        runtime = service.runtime
        store = runtime.store
        assert isinstance(store, EdgeVectorStore), "the latency bench measures the embedded store"
        with runtime.session_factory() as session:
            others = [create_tenant(session, name=f"other-{i}").id for i in range(tenants - 1)]
            session.commit()
        started = time.perf_counter()
        for batch in synthetic_points([service.tenant_id, *others], size, rng):
            store.upsert(batch)
        load_s = time.perf_counter() - started
        encoder = runtime.embedder.model  # type: ignore[union-attr]
        lexical = LexicalEncoder(RetrievalSettings().lexical)
        words = random.Random(seed)
        questions = [" ".join(words.sample(VOCABULARY, 5)) for _ in range(queries + 5)]
        ragkb_ms: list[float] = []
        bare_ms: list[float] = []
        for n, question in enumerate(questions):
            t0 = time.perf_counter()
            response = service.client.post(
                "/v1/search",
                headers=service.headers,
                json={"query": question, "top_k": 10, "rerank": False},
            )
            t1 = time.perf_counter()
            response.raise_for_status()
            bare_search(store, encoder, lexical, service.tenant_id, question)
            t2 = time.perf_counter()
            if n >= 5:  # the first few warm caches up
                ragkb_ms.append((t1 - t0) * 1000)
                bare_ms.append((t2 - t1) * 1000)
    ragkb_p50, bare_p50 = statistics.median(ragkb_ms), statistics.median(bare_ms)
    return {
        "chunks": size,
        "tenants": tenants,
        "tenant_chunks": size // tenants,
        "load_s": round(load_s, 1),
        "p50_ms": round(ragkb_p50, 2),
        "p95_ms": round(float(np.percentile(ragkb_ms, 95)), 2),
        "bare_p50_ms": round(bare_p50, 2),
        "bare_p95_ms": round(float(np.percentile(bare_ms, 95)), 2),
        "ratio_to_bare": round(ragkb_p50 / bare_p50, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/search-latency.json"))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.tenants, args.queries, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "results": rows,
        "machine": {"cores": 2, "embedding_model": "all-MiniLM-L6-v2", "store": "qdrant-edge"},
        "command": "python bench/search_latency.py --sizes "
        + " ".join(map(str, args.sizes))
        + f" --tenants {args.tenants} --queries {args.queries}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| chunks | p50 ms | p95 ms | bare p50 ms | ratio |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['chunks']} | {r['p50_ms']} | {r['p95_ms']} | {r['bare_p50_ms']} | "
            f"{r['ratio_to_bare']} |"
        )
    _plot(rows, args.out.with_suffix(".png"))


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = [r["chunks"] for r in rows]
    ax.plot(sizes, [r["p50_ms"] for r in rows], marker="o", label="ragkb /v1/search p50")
    ax.plot(sizes, [r["bare_p50_ms"] for r in rows], marker="o", label="bare encoder + qdrant p50")
    ax.set_xscale("log")
    ax.set_xlabel("chunks in the collection")
    ax.set_ylabel("ms")
    ax.legend()
    ax.set_title("hybrid search latency, one tenant among many")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
