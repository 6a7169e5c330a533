"""What Qdrant's int8 scalar quantization costs in retrieval quality and saves in memory.

Qdrant's own engine does the quantized search: qdrant-edge (the embedded store) implements
scalar int8 quantization, oversampling and rescoring as the server does (same segment code).
`ragkb eval retrieval --workdir W` leaves W with the embedded store of a BEIR corpus; this reads
its points back (dense and sparse vectors, payloads: nothing is re-encoded), writes them into one
fresh store per collection layout (ragkb's own `EdgeVectorStore` and `edge_config`), has Qdrant
build the HNSW graphs and quantized vectors (`optimize`), then runs every query of the split as
the product does (top 100 chunks folded to documents; dense alone, and hybrid DBSF with IDF^1.5)
under each search setting, and reports nDCG@10, recall@100, latency and the bytes per point of
each on-disk component.

    python bench/quantization.py --workdir /tmp/scifact-work --corpus ../shared/data/scifact \
        --split train --out bench/results/quantization.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from api.eval_retrieval import document_id_of, fold_to_documents, load_beir, ndcg_at, recall_at
from core.embedding import create_embedder
from core.lexical import LexicalEncoder, weight_by_idf
from core.settings import (
    CollectionSettings,
    EmbeddingSettings,
    FusionMethod,
    LexicalSettings,
    Quantization,
    RetrievalSettings,
)
from core.vectorstore import DENSE_VECTOR, SPARSE_VECTOR, TENANT_FIELD, HybridQuery
from core.vectorstore.edge import EdgeVectorStore, dense_search_params, edge_config

DEPTH = 100


def stored_points(workdir: Path, model: str) -> tuple[str, list[Any]]:
    """The evaluation tenant and its points as qdrant-edge records (vectors and payload)."""
    tenant = json.loads((workdir / "eval-tenant.json").read_text())["tenant_id"]
    shard = qe.EdgeShard.load(str(workdir / "qdrant" / f"chunks__{model.lower()}"))
    points: list[Any] = []
    offset: Any = None
    while True:
        records, offset = shard.scroll(
            qe.ScrollRequest(
                limit=1000, offset=offset, with_payload=True,
                with_vector=[DENSE_VECTOR, SPARSE_VECTOR],
            )
        )  # fmt: skip
        for r in records:
            vector: Any = r.vector
            payload: Any = r.payload
            if payload[TENANT_FIELD] == tenant:
                points.append(qe.Point(r.id, dict(vector), dict(payload)))
        if offset is None:
            break
    shard.close()
    return tenant, points


def build(folder: Path, points: list[Any], layout: CollectionSettings) -> EdgeVectorStore:
    """A store of `layout` holding `points`, optimised: graphs and int8 vectors built.

    Qdrant indexes (and quantizes) a segment only past its indexing threshold (10 MB of
    vectors by default, ~6,500 384-d chunks); the threshold is lowered here so a sample this
    size is searched as a large tenant's would be. Everything else is the product's config."""
    base = edge_config(384, layout)
    config = qe.EdgeConfig(
        vectors=base.vectors,
        sparse_vectors=base.sparse_vectors,
        on_disk_payload=base.on_disk_payload,
        hnsw_config=base.hnsw_config,
        quantization_config=base.quantization_config,
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1),
    )
    qe.EdgeShard.create(str(folder), config).close()
    store = EdgeVectorStore(
        path=folder, dimension=384, lexical=LexicalEncoder(LexicalSettings()), layout=layout
    )
    store.ensure_collection()
    for i in range(0, len(points), 1000):
        store.shard.update(qe.UpdateOperation.upsert_points(points[i : i + 1000]))
    store.shard.flush()
    store.shard.optimize()
    return store


def component_bytes(folder: Path) -> dict[str, int]:
    """Bytes on disk per segment component (vector storage, HNSW index, payload...)."""
    sizes: dict[str, int] = {}
    for segment in (folder / "segments").iterdir():
        for part in segment.iterdir():
            files = [part] if part.is_file() else [f for f in part.rglob("*") if f.is_file()]
            sizes[part.name] = sizes.get(part.name, 0) + sum(f.stat().st_size for f in files)
    return dict(sorted(sizes.items()))


def run(
    store: EdgeVectorStore,
    tenant: str,
    queries: list[tuple[str, list[float], Any]],
    qrels: dict[str, dict[str, int]],
    *,
    hybrid: bool,
    params: Any,
    retrieval: RetrievalSettings,
) -> dict[str, Any]:
    store._dense_params = params  # the search-time setting under test
    ndcg: list[float] = []
    recall: list[float] = []
    latency: list[float] = []
    for query_id, dense, sparse in queries:
        query = HybridQuery(
            limit=DEPTH,
            dense=dense,
            sparse=sparse if hybrid else None,
            candidates=retrieval.candidates,
            fusion=FusionMethod.DBSF,
        )
        started = time.perf_counter()
        hits = store.search(tenant_id=tenant, query=query)
        latency.append((time.perf_counter() - started) * 1000)
        ranked = fold_to_documents(str(h.payload["path"]) for h in hits)
        ndcg.append(ndcg_at(ranked, qrels[query_id], 10))
        recall.append(recall_at(ranked, qrels[query_id], 100))
    ordered = sorted(latency)
    return {
        "ndcg@10": round(statistics.fmean(ndcg), 4),
        "recall@100": round(statistics.fmean(recall), 4),
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "per_query_ndcg": ndcg,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--oversampling", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    beir = load_beir(args.corpus, args.split)
    tenant, points = stored_points(args.workdir, args.model)
    # A partly ingested workdir answers only the queries whose relevant documents are all in.
    stored = {document_id_of(str(p.payload["path"])) for p in points}
    complete = {q for q, relevant in beir.qrels.items() if set(relevant) <= stored}
    print(f"{len(points)} points of tenant {tenant}, {len(stored)} documents, "
          f"{len(complete)} of {len(beir.qrels)} queries answerable", file=sys.stderr)  # fmt: skip
    embedder = create_embedder(EmbeddingSettings(model=args.model))
    retrieval = RetrievalSettings()
    lexical = LexicalEncoder(retrieval.lexical)
    ids = sorted(complete)
    dense_vectors = [embedder.embed_query(beir.queries[q]) for q in ids]

    results: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for quantization in (Quantization.NONE, Quantization.INT8):
            layout = CollectionSettings(quantization=quantization)
            started = time.perf_counter()
            store = build(Path(tmp) / quantization.value, points, layout)
            build_s = time.perf_counter() - started
            print(f"{quantization.value}: built in {build_s:.0f} s", file=sys.stderr)
            info = store.shard.info()
            memory[quantization.value] = {
                "points": info.points_count,
                "indexed_vectors": info.indexed_vectors_count,
                "build_and_optimize_s": round(build_s, 1),
                "bytes_per_point": {
                    name: round(size / len(points), 1)
                    for name, size in component_bytes(Path(tmp) / quantization.value).items()
                },
            }
            # IDF^1.5 as the product weighs the lexical query (`retrieval.idf_power`).
            queries = []
            for q, dense in zip(ids, dense_vectors, strict=True):
                sparse = lexical.encode_query(beir.queries[q])
                idf = store.idf(tenant_id=tenant, terms=sparse)
                queries.append((q, dense, weight_by_idf(sparse, idf, retrieval.idf_power)))
            settings: list[tuple[str, Any]] = [("exact", qe.SearchParams(exact=True))]
            if quantization is Quantization.NONE:
                settings.append(("float32 HNSW", None))
            else:
                settings.append(("int8, no rescoring", dense_search_params(
                    CollectionSettings(rescore=False, oversampling=1.0))))  # fmt: skip
                for factor in args.oversampling:
                    settings.append((f"int8, rescore, oversampling {factor:g}", dense_search_params(
                        CollectionSettings(rescore=True, oversampling=factor))))  # fmt: skip
            for name, params in settings:
                for hybrid in (False, True):
                    row = run(store, tenant, queries, beir.qrels, hybrid=hybrid, params=params,
                              retrieval=retrieval)  # fmt: skip
                    row = {"layout": quantization.value, "search": name,
                           "mode": "hybrid (DBSF)" if hybrid else "dense", **row}  # fmt: skip
                    print(f"{row['layout']:5} {row['mode']:14} {name:34} "
                          f"nDCG@10 {row['ndcg@10']:.4f}  R@100 {row['recall@100']:.4f}  "
                          f"p50 {row['p50_ms']:.1f} ms", file=sys.stderr)  # fmt: skip
                    results.append(row)
            store.close()
    for row in results:
        row.pop("per_query_ndcg")
    # What int8 adds to the dense vector storage, per point (measured: the two stores differ
    # only in it), against float32's 4 bytes per dimension.
    int8_bytes = (
        memory["int8"]["bytes_per_point"]["vector_storage-dense"]
        - memory["none"]["bytes_per_point"]["vector_storage-dense"]
    )
    mib = 1_000_000 / 2**20
    per_million = {
        "float32_vectors_mib": round(384 * 4 * mib),
        "int8_vectors_mib_measured": round(int8_bytes * mib),
        # Qdrant's HNSW keeps 2*m links of 4 bytes per point on level 0 and ~1/m of points on
        # each level above (Malkov & Yashunin 2018): about (2m + m/(m-1)) links of 4 bytes.
        "hnsw_graph_payload_m16_mib_estimate": round((2 * 16 + 16 / 15) * 4 * mib),
        "ram_vectors_in_ram_no_quantization_mib": round(384 * 4 * mib),
        "ram_vectors_on_disk_int8_in_ram_mib": round(int8_bytes * mib),
        "note": "RAM pinned by dense vectors and graph per 1M 384-d chunks; with vectors on "
        "disk the float32 originals live in the page cache, read to rescore 2x limit "
        "candidates per search. Payload, sparse vectors and payload indexes come on top.",
    }
    out = {
        "command": "PYTHONPATH=. python " + shlex.join(sys.argv),
        "corpus": str(args.corpus),
        "split": args.split,
        "queries": len(ids),
        "documents": len(stored),
        "chunks": len(points),
        "embedding_model": args.model,
        "layout": CollectionSettings().model_dump(mode="json"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, load {os.getloadavg()}",
        "results": results,
        "memory": memory,
        "per_million_chunks": per_million,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
