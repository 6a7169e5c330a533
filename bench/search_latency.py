"""`/v1/search` latency against the bare components, at growing collection sizes.

For each size, synthetic chunks (random unit vectors, text drawn from a word list, so the BM25
side has real postings) are spread over `--tenants` tenants in one embedded collection; the
measured tenant holds its share. The same questions are then timed two ways, interleaved:
- ragkb: `POST /v1/search` over real HTTP on loopback, to the app served by uvicorn (as `ragkb
  serve` does) on a thread of this process, since the embedded store admits one process; the
  client is the standard library's keep-alive `http.client`, so the figure is the server's, not a
  client library's. It covers auth, rate limit, audit event, query embedding, lexical encoding,
  the hybrid query, dense scores and the JSON response;
- bare: what a user would write with the libraries directly: the encoder's `encode`, the lexical
  encoder, the same IDF readback (one qdrant-edge `query_batch` of one-term searches for terms
  not read before, when `retrieval.idf_power` is not 1; ragkb remembers a term's IDF for
  `retrieval.idf_cache_ttl_s`) and qdrant-edge's `query` with the same prefetches, fusion
  (ragkb's configured one), tenant filter, IDF counted over the tenant's points (`SearchParams.
  idf`) and payload, called on this thread;
- bare, same forward: the bare side again with ragkb's one-text encoder call (tokenizer,
  transformer, mean pooling, norm: the same vector as `encode`, ~3-4 ms less Python per query)
  in place of `encode`, so `ratio_to_bare_forward` is the service's overhead alone, and
  `ratio_to_bare` also counts what ragkb's leaner encoder call saves a user;
- /v1/query: the question path up to the reader (conversation, audit row, retrieval, evidence
  gate), against the same bare retrieval. No synthetic chunk is evidence, so the reader is not
  called: its time (seconds on a CPU, the same call with or without ragkb) would hide the rest.
Quality is measured on real data by `ragkb eval retrieval`; here only cost matters.

    python bench/search_latency.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import os

# Both sides encode in this one process, ragkb on its encoder thread and the bare side on this
# one: each calling thread gets its own OpenMP team, and an active team spins after its call,
# taking the 2 cores from the other side's next call. Passive waiting keeps the sides apart.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import http.client
import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
import uvicorn

from api.app import create_app
from api.eval_answers import throwaway_service
from api.runtime import Runtime
from core.embedding import MeanPoolingForward
from core.lexical import LexicalEncoder, weight_by_idf
from core.settings import FusionMethod, LimitSettings, ReaderSettings, RetrievalSettings
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
    store: EdgeVectorStore,
    encode: Callable[[str], list[float]],
    lexical: LexicalEncoder,
    retrieval: RetrievalSettings,
    tenant_id: str,
    query: str,
    known_idf: dict[int, float],
) -> int:
    dense = encode(query)
    sparse = lexical.encode_query(query)
    tenant = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant_id))])
    # BM25's IDF over the tenant's points, not every tenant's (what ragkb asks for too).
    own_idf = qe.SearchParams(idf=qe.IdfParams(corpus=tenant))
    if retrieval.idf_power != 1:
        # The same IDF readback ragkb does (one batched one-term search per query term not read
        # before; ragkb keeps a term's IDF for `idf_cache_ttl_s`, longer than this bench runs).
        missing = [index for index in sparse.indices if index not in known_idf]
        probes = [
            qe.QueryRequest(
                limit=1,
                query=qe.Query.Nearest(qe.SparseVector([index], [1.0]), using=SPARSE_VECTOR),
                filter=tenant,
                params=own_idf,
                with_payload=False,
                with_vector=[SPARSE_VECTOR],
            )
            for index in missing
        ]
        results = store.shard.query_batch(qe.QueryBatchRequest(probes)) if probes else []
        for index, hits in zip(missing, results, strict=True):
            stored = hits[0].vector.get(SPARSE_VECTOR) if hits else None
            weight = (
                dict(zip(stored.indices, stored.values, strict=True)).get(index) if stored else None
            )
            known_idf[index] = float(hits[0].score) / weight if weight else 0.0
        idf = {index: known_idf[index] for index in sparse.indices if known_idf[index] > 0}
        sparse = weight_by_idf(sparse, idf, retrieval.idf_power)
    fusion = (
        qe.Fusion.Dbsf()
        if retrieval.fusion is FusionMethod.DBSF
        else qe.Fusion.Rrf(
            k=retrieval.rrf_k, weights=[retrieval.dense_weight, retrieval.lexical_weight]
        )
    )
    request = qe.QueryRequest(
        limit=10,
        prefetches=[
            qe.Prefetch(
                limit=retrieval.candidates,
                query=qe.Query.Nearest(dense, using=DENSE_VECTOR),
                filter=tenant,
            ),
            qe.Prefetch(
                limit=retrieval.candidates,
                query=qe.Query.Nearest(
                    qe.SparseVector(list(sparse.indices), list(sparse.values)), using=SPARSE_VECTOR
                ),
                filter=tenant,
                params=own_idf,
            ),
        ],
        query=fusion,
        filter=tenant,
        with_payload=True,
    )
    return len(store.shard.query(request))


@contextmanager
def served(runtime: Runtime) -> Iterator[int]:
    """The app on a loopback port, served by uvicorn on a thread; yields the port."""
    app = create_app(runtime.settings, runtime)
    app.state.runtime = runtime  # the runtime is already started by the throwaway service
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def measure(size: int, tenants: int, queries: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    unlimited = LimitSettings(queries_per_minute=10**9, query_burst=10**9)
    with throwaway_service(
        reader=ReaderSettings(managed=False),
        limits=unlimited,
        # No synthetic chunk is evidence, so /v1/query answers "not in the sources" without a
        # reader: what is timed is the service's part of a question, the reader's is not.
        retrieval=RetrievalSettings(min_score=0.99),
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
        lean = MeanPoolingForward.of(encoder)
        assert lean is not None, "the bench's model is a plain mean-pooling one"

        def library_encode(text: str) -> list[float]:
            return [float(x) for x in encoder.encode([text], normalize_embeddings=True)[0]]

        retrieval = runtime.settings.retrieval
        lexical = LexicalEncoder(retrieval.lexical)
        words = random.Random(seed)
        questions = [" ".join(words.sample(VOCABULARY, 5)) for _ in range(queries + 5)]
        known_idf: dict[int, float] = {}
        ragkb_ms: list[float] = []
        bare_ms: list[float] = []
        lean_ms: list[float] = []
        query_ms: list[float] = []
        headers = {**service.headers, "Content-Type": "application/json"}
        with served(runtime) as port:
            connection = http.client.HTTPConnection("127.0.0.1", port)
            for n, question in enumerate(questions):
                body = json.dumps({"query": question, "top_k": 10, "rerank": False})
                t0 = time.perf_counter()
                connection.request("POST", "/v1/search", body=body, headers=headers)
                response = connection.getresponse()
                hits = json.loads(response.read())["hits"]
                t1 = time.perf_counter()
                if response.status != 200 or len(hits) != 10:
                    raise RuntimeError(f"search answered {response.status} with {len(hits)} hits")
                bare_search(
                    store, library_encode, lexical, retrieval, service.tenant_id, question,
                    known_idf,
                )  # fmt: skip
                t2 = time.perf_counter()
                bare_search(store, lean, lexical, retrieval, service.tenant_id, question, known_idf)
                t3 = time.perf_counter()
                if n >= 5:  # the first few warm caches up
                    ragkb_ms.append((t1 - t0) * 1000)
                    bare_ms.append((t2 - t1) * 1000)
                    lean_ms.append((t3 - t2) * 1000)
            # Questions in a pass of their own: their database writes (conversation, audit row)
            # would otherwise land in the middle of the interleaved search timings.
            for n, question in enumerate(questions):
                t0 = time.perf_counter()
                connection.request(
                    "POST", "/v1/query", body=json.dumps({"question": question, "top_k": 10}),
                    headers=headers,
                )  # fmt: skip
                response = connection.getresponse()
                answer = json.loads(response.read())
                t1 = time.perf_counter()
                if response.status != 200 or answer["answered"]:
                    raise RuntimeError(f"query answered {response.status}: {answer}")
                if n >= 5:
                    query_ms.append((t1 - t0) * 1000)
            connection.close()
    ragkb_p50, bare_p50 = statistics.median(ragkb_ms), statistics.median(bare_ms)
    lean_p50 = statistics.median(lean_ms)
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
        "bare_forward_p50_ms": round(lean_p50, 2),
        "ratio_to_bare_forward": round(ragkb_p50 / lean_p50, 3),
        "query_p50_ms": round(statistics.median(query_ms), 2),
        "query_p95_ms": round(float(np.percentile(query_ms, 95)), 2),
        "query_ratio_to_bare": round(statistics.median(query_ms) / bare_p50, 3),
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
        "machine": {
            "cores": 2,
            "shared": "with other jobs; figures vary run to run by a few ms",
            "embedding_model": "all-MiniLM-L6-v2",
            "store": "qdrant-edge",
            "fusion": RetrievalSettings().fusion.value,
            "ragkb_side": "POST /v1/search over loopback HTTP (uvicorn, http.client keep-alive)",
            "bare_side": "SentenceTransformer.encode + LexicalEncoder + qdrant-edge query",
            "query_side": "POST /v1/query (JSON) up to the reader: a new conversation, its audit "
            "row and turn committed to the database, retrieval and the evidence gate; no synthetic "
            "chunk passes the gate, so the reader (the same call with or without ragkb) is not "
            "called",
            "bare_forward_side": "the same with ragkb's own one-text encoder call "
            "(core.embedding.MeanPoolingForward) instead of SentenceTransformer.encode: "
            "ragkb's overhead alone",
        },
        "command": "python bench/search_latency.py --sizes "
        + " ".join(map(str, args.sizes))
        + f" --tenants {args.tenants} --queries {args.queries}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        "| chunks | p50 ms | p95 ms | bare p50 ms | ratio | bare (same forward) p50 ms | ratio "
        "| /v1/query p50 ms | ratio |\n|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['chunks']} | {r['p50_ms']} | {r['p95_ms']} | {r['bare_p50_ms']} | "
            f"{r['ratio_to_bare']} | {r['bare_forward_p50_ms']} | {r['ratio_to_bare_forward']} | "
            f"{r['query_p50_ms']} | {r['query_ratio_to_bare']} |"
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
    ax.plot(
        sizes,
        [r["bare_forward_p50_ms"] for r in rows],
        marker="o",
        linestyle="--",
        label="bare, ragkb's one-text forward p50",
    )
    ax.plot(
        sizes,
        [r["query_p50_ms"] for r in rows],
        marker="s",
        label="ragkb /v1/query p50 (no reader)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("chunks in the collection")
    ax.set_ylabel("ms")
    ax.legend()
    ax.set_title("hybrid search latency, one tenant among many")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
