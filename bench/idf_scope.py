"""What counting IDF per tenant costs a search: the same queries with Qdrant's collection-wide IDF
(ragkb before) and with the IDF corpus narrowed to the tenant, or to what one end user of it may
read (`SearchParams.idf`, ragkb now), interleaved on one qdrant-edge shard.

Synthetic chunks as in `bench/search_latency.py` (random unit vectors, 40 words each from a
48-word vocabulary, so every query term sits in ~60% of the chunks: the worst case for counting
a term's chunks), spread over `--tenants` tenants; a fifth of the chunks carry an access list.
Timed for each question, in turn, as the tenant's app (no end user) and as an end user (whose
search also filters on the access list), with IDF over the collection, the tenant, or what the
end user may read: the hybrid request ragkb sends (dense and lexical prefetches of
400, DBSF, top 10 with payload) and the IDF readback of its terms (one batched one-term search
per term, made when a term's IDF is not remembered). No encoder, no HTTP: only the store's part.

    python bench/idf_scope.py --sizes 10000 100000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from core.lexical import LexicalEncoder
from core.settings import LexicalSettings
from core.vectorstore import (
    DENSE_VECTOR,
    PRINCIPALS_FIELD,
    PUBLIC_PRINCIPAL,
    SPARSE_VECTOR,
    TENANT_FIELD,
    ChunkPoint,
)
from core.vectorstore.edge import EdgeVectorStore

_WORDS = (
    "protein cell gene expression tumor immune response patient therapy risk dose trial mouse "
    "receptor signal pathway infection virus vaccine antibody blood brain heart liver kidney "
    "insulin glucose obesity diet exercise sleep stress hormone estrogen bone muscle nerve "
    "mutation cancer breast lung colon prostate survival mortality cohort incidence screening"
)
VOCABULARY = tuple(_WORDS.split())
# (who searches: the tenant's app with no end user, or an end user; what IDF is counted over)
VARIANTS = (
    ("tenant", "collection"),  # ragkb before, no end user
    ("tenant", "tenant"),  # ragkb now, no end user
    ("end user", "collection"),  # ragkb before, an end user
    ("end user", "tenant"),  # the alternative: an end user's IDF over all of the tenant's points
    ("end user", "end user"),  # ragkb now: over what the end user may read
)


def load(store: EdgeVectorStore, size: int, tenants: list[str], rng: np.random.Generator) -> None:
    words = np.array(VOCABULARY)
    for start in range(0, size, 2000):
        count = min(2000, size - start)
        vectors = rng.standard_normal((count, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = []
        for i in range(count):
            n = start + i
            text = " ".join(rng.choice(words, 40))
            payload: dict[str, Any] = {"path": f"s/{n // 4}.md", "text": text}
            if (n // len(tenants)) % 5 == 0:  # a fifth of each tenant's chunks
                payload[PRINCIPALS_FIELD] = ["group:finance"]
            batch.append(
                ChunkPoint(f"00000000-0000-4000-8000-{n:012d}", tenants[n % len(tenants)],
                           f"doc-{n // 4}", "v1", vectors[i].tolist(), payload)
            )  # fmt: skip
        store.upsert(batch)


def corpus(scope: str, tenant: qe.Filter, reader: qe.Filter) -> Any:
    if scope == "collection":
        return None
    return qe.SearchParams(idf=qe.IdfParams(corpus=tenant if scope == "tenant" else reader))


def name(variant: tuple[str, str]) -> str:
    return f"{variant[0]}_idf_{variant[1]}".replace(" ", "_")


def measure(size: int, tenants: int, queries: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    lexical = LexicalEncoder(LexicalSettings())
    names = [f"tenant-{i}" for i in range(tenants)]
    with tempfile.TemporaryDirectory() as folder:
        store = EdgeVectorStore(path=Path(folder) / "s", dimension=384, lexical=lexical)
        started = time.perf_counter()
        load(store, size, names, rng)
        load_s = time.perf_counter() - started
        tenant = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(names[0]))])
        reader = qe.Filter(
            must=[
                qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(names[0])),
                qe.FieldCondition(
                    PRINCIPALS_FIELD, match=qe.MatchAny(["user:ann", PUBLIC_PRINCIPAL])
                ),
            ]
        )
        words = random.Random(seed)
        timings: dict[str, dict[str, list[float]]] = {
            name(v): {"search": [], "readback": []} for v in VARIANTS
        }
        for n in range(queries + 5):
            sparse = lexical.encode_query(" ".join(words.sample(VOCABULARY, 5)))
            dense = rng.standard_normal(384).astype(np.float32)
            dense /= np.linalg.norm(dense)
            for variant in words.sample(VARIANTS, len(VARIANTS)):  # interleaved, random order
                searcher, scope = variant
                filter_ = reader if searcher == "end user" else tenant
                params = corpus(scope, tenant, reader)
                request = qe.QueryRequest(
                    limit=10,
                    prefetches=[
                        qe.Prefetch(
                            limit=400,
                            query=qe.Query.Nearest(dense.tolist(), using=DENSE_VECTOR),
                            filter=filter_,
                        ),
                        qe.Prefetch(
                            limit=400,
                            query=qe.Query.Nearest(
                                qe.SparseVector(list(sparse.indices), list(sparse.values)),
                                using=SPARSE_VECTOR,
                            ),
                            filter=filter_,
                            params=params,
                        ),
                    ],
                    query=qe.Fusion.Dbsf(),
                    filter=filter_,
                    with_payload=True,
                    with_vector=[DENSE_VECTOR],
                )
                probes = qe.QueryBatchRequest(
                    [
                        qe.QueryRequest(
                            limit=1,
                            query=qe.Query.Nearest(
                                qe.SparseVector([i], [1.0]), using=SPARSE_VECTOR
                            ),
                            filter=filter_,
                            params=params,
                            with_payload=False,
                            with_vector=[SPARSE_VECTOR],
                        )
                        for i in sparse.indices
                    ]
                )
                t0 = time.perf_counter()
                hits = store.shard.query(request)
                t1 = time.perf_counter()
                idf = store.shard.query_batch(probes)
                t2 = time.perf_counter()
                if len(hits) != 10 or not all(idf):
                    raise RuntimeError(f"{variant}: {len(hits)} hits, IDF readback {idf}")
                if n >= 5:
                    timings[name(variant)]["search"].append((t1 - t0) * 1000)
                    timings[name(variant)]["readback"].append((t2 - t1) * 1000)
        store.close()
    row: dict[str, Any] = {"chunks": size, "tenants": tenants, "load_s": round(load_s, 1)}
    for variant, by_step in timings.items():
        for step, ms in by_step.items():
            key = f"{variant}_{step}"
            row[f"{key}_p50_ms"] = round(statistics.median(ms), 2)
            row[f"{key}_p95_ms"] = round(float(np.percentile(ms, 95)), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/idf-scope.json"))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.tenants, args.queries, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "results": rows,
        "machine": {"cores": 2, "shared": "with other jobs", "store": "qdrant-edge"},
        "command": "python bench/idf_scope.py --sizes "
        + " ".join(map(str, args.sizes))
        + f" --tenants {args.tenants} --queries {args.queries}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        "| chunks | search by | IDF counted over | hybrid search p50 / p95 ms "
        "| IDF readback p50 / p95 ms |\n|---|---|---|---|---|"
    )
    for r in rows:
        for variant in VARIANTS:
            key = name(variant)
            print(
                f"| {r['chunks']} | {variant[0]} | {variant[1]} | {r[f'{key}_search_p50_ms']} / "
                f"{r[f'{key}_search_p95_ms']} | {r[f'{key}_readback_p50_ms']} / "
                f"{r[f'{key}_readback_p95_ms']} |"
            )


if __name__ == "__main__":
    main()
