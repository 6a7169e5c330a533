"""`ragkb eval retrieval`: ranking quality through the real ingest and `/v1/search` paths.

A BEIR-format corpus (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) is uploaded as Markdown
files (`# title` + text) into a throw-away tenant through upload → Celery → index, then every
judged query goes through `POST /v1/search` once per configuration. Chunk hits are folded into
documents (a document ranks where its best chunk ranks), then nDCG@10, Recall@10/100 and MRR are
computed against the qrels, with request latency and per-stage timings.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.eval_answers import ThrowawayService
from core.settings import RetrievalSettings
from retrieval.retriever import Retriever

PASSAGE_FOLDER = "corpus"


@dataclass(frozen=True)
class BeirSet:
    documents: dict[str, tuple[str, str]]  # id → (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id → document id → relevance


def load_beir(corpus_dir: Path, split: str | None = None) -> BeirSet:
    documents: dict[str, tuple[str, str]] = {}
    for line in (corpus_dir / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        documents[str(row["_id"])] = (str(row.get("title") or ""), str(row["text"]))
    qrels: dict[str, dict[str, int]] = {}
    files = (
        [corpus_dir / "qrels" / f"{split}.tsv"]
        if split
        else sorted((corpus_dir / "qrels").glob("*.tsv"))
    )
    for qrels_file in files:
        for line in qrels_file.read_text().splitlines()[1:]:
            query_id, doc_id, score = line.split("\t")
            if int(score) > 0:
                qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {}
    for line in (corpus_dir / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        if str(row["_id"]) in qrels:
            queries[str(row["_id"])] = str(row["text"])
    return BeirSet(documents, queries, {q: qrels[q] for q in queries})


def as_markdown(title: str, text: str) -> str:
    return f"# {title}\n\n{text}\n" if title else f"{text}\n"


def document_id_of(path: str) -> str:
    """The BEIR id back from the uploaded file's path (`corpus/<id>.md`)."""
    return path.removeprefix(f"{PASSAGE_FOLDER}/").removesuffix(".md")


# --- metrics (trec_eval's definitions, linear gain as BEIR reports) ---------------------------


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    for i, doc in enumerate(ranked):
        if doc in relevant:
            return 1 / (i + 1)
    return 0.0


def fold_to_documents(paths: Iterable[str]) -> list[str]:
    """Document ids in the order of their best chunk."""
    seen: dict[str, None] = {}
    for path in paths:
        seen.setdefault(document_id_of(path), None)
    return list(seen)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalConfig:
    name: str
    mode: str
    rerank: bool = False
    overrides: dict[str, Any] | None = None


DEFAULT_CONFIGS = (
    RetrievalConfig("lexical (BM25)", "lexical"),
    RetrievalConfig("dense", "dense"),
    RetrievalConfig("hybrid (RRF)", "hybrid", overrides={"fusion": "rrf"}),
    RetrievalConfig("hybrid (DBSF)", "hybrid", overrides={"fusion": "dbsf"}),
)


def ingest_corpus(service: ThrowawayService, beir: BeirSet, *, batch: int = 250) -> float:
    """Upload every document through the real ingest path; returns seconds taken."""
    client, headers = service.client, service.headers
    started = time.perf_counter()
    ids = sorted(beir.documents)
    job_ids = []
    for start in range(0, len(ids), batch):
        files = [
            ("files", (f"{PASSAGE_FOLDER}/{d}.md", as_markdown(*beir.documents[d]).encode()))
            for d in ids[start : start + batch]
        ]
        response = client.post("/v1/ingest/jobs", headers=headers, files=files)
        response.raise_for_status()
        job_ids.append(response.json()["id"])
    for job_id in job_ids:
        while True:
            job = client.get(f"/v1/ingest/jobs/{job_id}", headers=headers).json()
            if job["status"].startswith("completed"):
                failed = [f["path"] for f in job["files"] if f["state"] == "failed"]
                if failed:
                    raise RuntimeError(f"{len(failed)} files failed to ingest, e.g. {failed[:3]}")
                break
            time.sleep(0.5)
    return time.perf_counter() - started


def run_config(
    service: ThrowawayService, beir: BeirSet, config: RetrievalConfig, *, depth: int = 100
) -> dict[str, Any]:
    runtime = service.runtime
    configured: Retriever = runtime.retriever
    if config.overrides:
        runtime.retriever = configured.with_settings(
            RetrievalSettings.model_validate(
                {**configured.settings.model_dump(), **config.overrides}
            )
        )
    try:
        rows = [_search(service, beir, qid, config, depth) for qid in sorted(beir.queries)]
    finally:
        runtime.retriever = configured
    return summarize(config.name, rows)


def _search(
    service: ThrowawayService, beir: BeirSet, query_id: str, config: RetrievalConfig, depth: int
) -> dict[str, Any]:
    started = time.perf_counter()
    response = service.client.post(
        "/v1/search",
        headers=service.headers,
        json={"query": beir.queries[query_id], "top_k": depth, "mode": config.mode,
              "rerank": config.rerank},
    )  # fmt: skip
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    body = response.json()
    ranked = fold_to_documents(h["path"] for h in body["hits"])
    return score_ranking(ranked, beir.qrels[query_id], elapsed_ms, body["timings_ms"])


def score_ranking(
    ranked: Sequence[str], relevant: dict[str, int], elapsed_ms: float, stages_ms: dict[str, float]
) -> dict[str, Any]:
    return {
        "ndcg@10": ndcg_at(ranked, relevant, 10),
        "recall@10": recall_at(ranked, relevant, 10),
        "recall@100": recall_at(ranked, relevant, 100),
        "mrr": reciprocal_rank(ranked, relevant),
        "ms": elapsed_ms,
        "stages_ms": stages_ms,
    }


def summarize(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [r["ms"] for r in rows]
    stage_names = sorted({s for r in rows for s in r["stages_ms"]})
    return {
        "config": name,
        **{
            metric: round(statistics.fmean(r[metric] for r in rows), 4)
            for metric in ("ndcg@10", "recall@10", "recall@100", "mrr")
        },
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "stages_p50_ms": {
            s: round(percentile([r["stages_ms"].get(s, 0.0) for r in rows], 0.5), 1)
            for s in stage_names
        },
        "queries": len(rows),
    }


def run_llamaindex_baseline(
    beir: BeirSet, *, embed_passages: Callable[[list[str]], list[list[float]]],
    embed_query: Callable[[str], list[float]], depth: int = 100,
) -> dict[str, Any]:  # fmt: skip
    """LlamaIndex's default: SentenceSplitter nodes, the same encoder, its vector retriever."""
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding

    class SameEncoder(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return embed_query(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return embed_query(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embed_passages([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embed_passages(texts)

    Settings.embed_model = SameEncoder(embed_batch_size=64)
    documents = [
        Document(
            text=f"{title}\n\n{text}" if title else text, doc_id=doc_id, metadata={"id": doc_id}
        )
        for doc_id, (title, text) in beir.documents.items()
    ]
    index = VectorStoreIndex.from_documents(documents)
    retriever = index.as_retriever(similarity_top_k=depth)
    rows = []
    for query_id in sorted(beir.queries):
        started = time.perf_counter()
        nodes = retriever.retrieve(beir.queries[query_id])
        elapsed_ms = (time.perf_counter() - started) * 1000
        ranked = list(dict.fromkeys(str(n.node.metadata["id"]) for n in nodes))
        rows.append(score_ranking(ranked, beir.qrels[query_id], elapsed_ms, {}))
    return summarize("LlamaIndex default (same encoder)", rows)


def config_from_spec(spec: str) -> RetrievalConfig:
    """`name=mode[,rerank][,key=value…]`, e.g. `rrf-k20=hybrid,rrf_k=20,lexical_weight=1.5`."""
    name, _, rest = spec.partition("=")
    mode, *options = rest.split(",")
    rerank = "rerank" in options
    overrides: dict[str, Any] = {}
    for option in options:
        if "=" in option:
            key, value = option.split("=", 1)
            overrides[key] = _number_or_text(value)
    return RetrievalConfig(name, mode, rerank, overrides or None)


def _number_or_text(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| config | nDCG@10 | R@10 | R@100 | MRR | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['config']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['recall@100']:.4f} | "
        f"{r['mrr']:.4f} | {r['p50_ms']} | {r['p95_ms']} |"
        for r in results
    ]
    return "\n".join(lines)


def bar_chart(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["config"] for r in results]
    fig, (quality, latency) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 2))
    quality.barh(names, [r["ndcg@10"] for r in results])
    quality.set_xlim(0, 1)
    quality.set_xlabel("nDCG@10")
    for i, r in enumerate(results):
        quality.text(r["ndcg@10"] + 0.01, i, f"{r['ndcg@10']:.3f}", va="center")
    latency.barh(names, [r["p50_ms"] for r in results])
    latency.set_xlabel("p50 latency per /v1/search (ms)")
    latency.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
