"""The vector store at scale: one tenant among 1,000 in a store of a million chunks or more.

Fills the embedded store (qdrant-edge, ragkb's `EdgeVectorStore` with the default collection
layout: per-tenant HNSW, int8 quantization with rescoring) with synthetic chunks: random unit
384-d vectors, sparse lexical vectors of 40 terms drawn from a Zipf vocabulary, and ragkb's
full payload. The filler tenants go in through the engine in bulk; the measured tenant goes in
through ragkb's own write path (`replace_documents`, batches of 256 chunks, lexical encoding
included). Measures, on the way: resident memory (RSS) and bytes on disk per million chunks at
each fill step, the optimise time (graphs and int8 vectors), then for the measured tenant:
search p50/p95 (dense and hybrid DBSF, through `search` with the tenant filter and per-tenant
IDF), ingest, the store's side of `ragkb reconcile` (per-document counts), deletion of single
documents and of the whole tenant. Results, with the command and machine load, as JSON and PNG.

    python bench/store_scale.py --chunks 1000000 --tenants 1000 --tenant-chunks 20000 \
        --out bench/results/store-scale.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from core.lexical import LexicalEncoder
from core.settings import CollectionSettings, FusionMethod, LexicalSettings
from core.vectorstore import (
    DENSE_VECTOR,
    SPARSE_VECTOR,
    TENANT_FIELD,
    ChunkPoint,
    DocumentVersion,
    HybridQuery,
)
from core.vectorstore.edge import EdgeVectorStore

DIM = 384
VOCABULARY = 50_000
TERMS_PER_CHUNK = 40
CHUNKS_PER_DOCUMENT = 10
WORDS = [f"w{i}" for i in range(VOCABULARY)]


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def zipf_terms(rng: np.random.Generator, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.minimum(rng.zipf(1.3, size=n), VOCABULARY) - 1


def filler_batch(
    rng: np.random.Generator, tenant_of: np.ndarray[Any, Any], start: int
) -> list[Any]:
    """Chunks of the filler tenants, written straight through the engine (the fast path)."""
    n = len(tenant_of)
    vectors = unit_vectors(rng, n).tolist()
    terms = zipf_terms(rng, n * TERMS_PER_CHUNK).reshape(n, TERMS_PER_CHUNK)
    points = []
    for i in range(n):
        indices = sorted(set(terms[i].tolist()))
        sparse = qe.SparseVector(indices, [1.0] * len(indices))
        document = f"doc-{(start + i) // CHUNKS_PER_DOCUMENT}"
        payload = {"path": f"folder/{document}.md", "text": "",
                   "chunk_index": (start + i) % CHUNKS_PER_DOCUMENT}  # fmt: skip
        tenant_id = f"tenant-{tenant_of[i]}"
        point_id = str(uuid.UUID(int=start + i + 1))
        chunk = ChunkPoint(point_id, tenant_id, document, "v1", (), payload)
        points.append(
            qe.Point(chunk.point_id, {DENSE_VECTOR: vectors[i], SPARSE_VECTOR: sparse},
                     chunk.full_payload())
        )  # fmt: skip
    return points


def tenant_documents(
    rng: np.random.Generator, tenant: str, chunks: int, version: str
) -> list[DocumentVersion]:
    """The measured tenant's documents, as ragkb's ingest hands them to the store."""
    vectors = unit_vectors(rng, chunks).tolist()
    terms = zipf_terms(rng, chunks * TERMS_PER_CHUNK).reshape(chunks, TERMS_PER_CHUNK)
    documents = []
    for d in range(0, chunks, CHUNKS_PER_DOCUMENT):
        document = f"big-{d // CHUNKS_PER_DOCUMENT}"
        points = [
            ChunkPoint(
                str(uuid.uuid4()),
                tenant,
                document,
                version,
                vectors[i],
                {
                    "path": f"big/{document}.md",
                    "chunk_index": i - d,
                    "text": " ".join(WORDS[t] for t in terms[i]),
                },
            )
            for i in range(d, min(d + CHUNKS_PER_DOCUMENT, chunks))
        ]
        documents.append(DocumentVersion(tenant, document, version, points))
    return documents


def component_bytes(folder: Path) -> dict[str, int]:
    """Bytes on disk per segment component, summed over segments (which parts Qdrant keeps in
    RAM is in docs/operations.md)."""
    sizes: dict[str, int] = {}
    for segment in (folder / "segments").iterdir():
        for part in segment.iterdir():
            files = [part] if part.is_file() else [f for f in part.rglob("*") if f.is_file()]
            sizes[part.name] = sizes.get(part.name, 0) + sum(f.stat().st_size for f in files)
    sizes["wal"] = disk_bytes(folder / "wal") if (folder / "wal").exists() else 0
    return dict(sorted(sizes.items()))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        "n": len(ordered),
    }


def plot(results: Path) -> Path:
    """RSS and disk against chunks stored during the fill, with the per-million slope carried
    to 10M chunks; written beside the results as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results.read_text())
    chunks = [row["chunks"] / 1e6 for row in data["fill"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("rss_mib", "RSS"), ("disk_mib", "on disk")):
        values = [row[key] / 1024 for row in data["fill"]]
        ax.plot(chunks, values, "o-", label=f"{label} (measured)")
        if len(chunks) < 2:
            continue
        slope = (values[-1] - values[0]) / (chunks[-1] - chunks[0])
        ax.plot([chunks[-1], 10], [values[-1], values[-1] + slope * (10 - chunks[-1])], "--",
                label=f"{label}: {slope:.2f} GiB per million, extrapolated")  # fmt: skip
    ax.set_xlabel("chunks stored (millions)")
    ax.set_ylabel("GiB")
    ax.set_title(f"qdrant-edge, {data['tenants']} tenants, 384-d + sparse, default layout")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = results.with_suffix(".png")
    fig.savefig(out, dpi=110)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, help="Only draw the PNG of a results file.")
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--tenant-chunks", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--folder", type=Path, default=None, help="Default: a temporary folder.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.plot:
        print(plot(args.plot))
        return
    if args.out is None:
        parser.error("--out is required")

    rng = np.random.default_rng(7)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="store-scale-"))
    shutil.rmtree(folder, ignore_errors=True)
    lexical = LexicalEncoder(LexicalSettings())
    layout = CollectionSettings()
    store = EdgeVectorStore(path=folder / "s", dimension=DIM, lexical=lexical, layout=layout)
    store.ensure_collection()
    baseline_rss = rss_bytes()
    fill: list[dict[str, Any]] = []
    filler = args.chunks - args.tenant_chunks
    started = time.perf_counter()
    # Filler tenants 1..tenants-1 in equal shares; tenant-0 is the measured one.
    for start in range(0, filler, args.batch):
        n = min(args.batch, filler - start)
        tenant_of = 1 + (np.arange(start, start + n) % (args.tenants - 1))
        store.shard.update(qe.UpdateOperation.upsert_points(filler_batch(rng, tenant_of, start)))
        done = start + n
        if done % 100_000 < args.batch or done == filler:
            store.shard.flush()
            elapsed = time.perf_counter() - started
            row = {
                "chunks": done,
                "seconds": round(elapsed, 1),
                "rss_mib": round(rss_bytes() / 2**20),
                "disk_mib": round(disk_bytes(folder) / 2**20),
            }
            fill.append(row)
            print(row, file=sys.stderr)
    fill_s = time.perf_counter() - started

    tenant = "tenant-0"
    documents = tenant_documents(rng, tenant, args.tenant_chunks, "v1")
    started = time.perf_counter()
    batch: list[DocumentVersion] = []
    for document in documents:
        batch.append(document)
        if sum(len(d.points) for d in batch) >= 256:
            store.replace_documents(batch)
            batch = []
    store.replace_documents(batch)
    tenant_ingest_s = time.perf_counter() - started
    print(f"tenant ingest {tenant_ingest_s:.1f} s", file=sys.stderr)

    started = time.perf_counter()
    store.shard.optimize()
    optimize_s = time.perf_counter() - started
    info = store.shard.info()
    loaded_rss = rss_bytes()
    print(f"optimize {optimize_s:.1f} s, {info}", file=sys.stderr)

    # Reopened from disk: what a restarted process holds before and after a query load.
    store.close()
    gc.collect()
    closed_rss = rss_bytes()
    started = time.perf_counter()
    store = EdgeVectorStore(path=folder / "s", dimension=DIM, lexical=lexical, layout=layout)
    store.ensure_collection()
    reopen_s = time.perf_counter() - started
    reopened_rss = rss_bytes()

    # Queries near the tenant's own chunks (a chunk's vector plus noise) and its own words.
    queries = []
    for q in range(args.queries):
        document = documents[q % len(documents)]
        point = document.points[0]
        noisy = np.asarray(point.dense_vector, dtype=np.float32) + 0.5 * unit_vectors(rng, 1)[0]
        noisy /= np.linalg.norm(noisy)
        words = str(point.payload["text"]).split()[:4]
        queries.append((noisy.tolist(), lexical.encode_query(" ".join(words))))
    search: dict[str, Any] = {}
    retrieval_candidates = 400
    for mode in ("dense", "hybrid"):
        times = []
        for dense, sparse in queries:
            query = HybridQuery(
                limit=20,
                dense=dense,
                sparse=sparse if mode == "hybrid" else None,
                candidates=retrieval_candidates,
                fusion=FusionMethod.DBSF,
            )
            t0 = time.perf_counter()
            store.search(tenant_id=tenant, query=query)
            times.append(time.perf_counter() - t0)
        search[mode] = percentiles(times)
        print(mode, search[mode], file=sys.stderr)
    # Recall of the first hit: the exact nearest neighbour by brute force over the tenant.
    tenant_vectors = np.asarray(
        [p.dense_vector for d in documents for p in d.points], dtype=np.float32
    )
    tenant_ids = [p.point_id for d in documents for p in d.points]
    # Random vectors have no structure: past the query's own chunk, its exact top 10 are near
    # ties (cosines ~0.05 apart), the hardest case for any ANN index. Recall is given for the
    # default search (int8, rescored) and with quantization ignored (float32 on the same graph),
    # so the two sources of error are told apart.
    source_ids = [documents[q % len(documents)].points[0].point_id for q in range(len(queries))]
    recall: dict[str, float] = {}
    default_params = store._dense_params
    for name, params in (("int8_rescored", default_params),
                         ("float32_same_graph", qe.SearchParams(
                             quantization=qe.QuantizationSearchParams(ignore=True))),
                         ("exact", qe.SearchParams(exact=True))):  # fmt: skip
        store._dense_params = params
        hits_at_10 = hits_at_1 = 0
        for (dense, _), source in zip(queries[:100], source_ids, strict=False):
            exact = np.argsort(-tenant_vectors @ np.asarray(dense, dtype=np.float32))[:10]
            found = store.search(tenant_id=tenant, query=HybridQuery(limit=10, dense=dense))
            hits_at_10 += len({tenant_ids[i] for i in exact} & {h.point_id for h in found})
            hits_at_1 += bool(found) and found[0].point_id == source
        n = min(100, len(queries))
        recall[f"{name}_recall@10_vs_exact"] = round(hits_at_10 / (10 * n), 4)
        recall[f"{name}_own_chunk_first"] = round(hits_at_1 / n, 4)
    store._dense_params = default_params
    after_queries_rss = rss_bytes()
    components = component_bytes(folder / "s")

    started = time.perf_counter()
    counts = store.document_counts(tenant_id=tenant)
    for document in documents:
        store.count(tenant_id=tenant, document_id=document.document_id)
        store.count(tenant_id=tenant, document_id=document.document_id, version="v1")
    reconcile_s = time.perf_counter() - started

    deletes = []
    for document in documents[:50]:
        t0 = time.perf_counter()
        store.delete_document(tenant_id=tenant, document_id=document.document_id)
        deletes.append(time.perf_counter() - t0)
    started = time.perf_counter()
    store.shard.update(
        qe.UpdateOperation.delete_points_by_filter(
            qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))])
        )
    )
    store.shard.flush()
    delete_tenant_s = time.perf_counter() - started
    remaining = store.count(tenant_id=tenant)
    store.close()
    on_disk = disk_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)

    per_million = 1_000_000 / args.chunks
    out = {
        "command": "PYTHONPATH=. python " + shlex.join(sys.argv),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "note": "2 cores shared with other engineers' jobs: times are upper bounds",
        },
        "layout": layout.model_dump(mode="json"),
        "chunks": args.chunks,
        "tenants": args.tenants,
        "tenant_chunks": args.tenant_chunks,
        "fill": fill,
        "fill_seconds": round(fill_s, 1),
        "fill_points_per_s": round(filler / fill_s),
        "optimize_seconds": round(optimize_s, 1),
        "indexed_vectors": info.indexed_vectors_count,
        "segments": info.segments_count,
        "memory": {
            "rss_baseline_mib": round(baseline_rss / 2**20),
            "rss_loaded_mib": round(loaded_rss / 2**20),
            "rss_after_reopen_mib": round((reopened_rss - closed_rss + baseline_rss) / 2**20),
            "rss_after_queries_mib": round((after_queries_rss - closed_rss + baseline_rss) / 2**20),
            "rss_per_million_chunks_mib": round((loaded_rss - baseline_rss) * per_million / 2**20),
            "rss_per_million_after_reopen_and_queries_mib": round(
                (after_queries_rss - closed_rss) * per_million / 2**20
            ),
            "disk_per_million_chunks_mib": round(on_disk * per_million / 2**20),
            "components_per_million_mib": {
                name: round(size * per_million / 2**20, 1) for name, size in components.items()
            },
        },
        "reopen_seconds": round(reopen_s, 1),
        "tenant": {
            "ingest_seconds": round(tenant_ingest_s, 1),
            "ingest_chunks_per_s": round(args.tenant_chunks / tenant_ingest_s),
            "search": search,
            **recall,
            "reconcile_store_seconds": round(reconcile_s, 2),
            "documents": len(counts),
            "delete_document": percentiles(deletes),
            "delete_tenant_seconds": round(delete_tenant_s, 2),
            "remaining_after_delete": remaining,
        },
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    plot(args.out)
    print(json.dumps(out["memory"]), json.dumps(out["tenant"]), file=sys.stderr)


if __name__ == "__main__":
    main()
