"""Sizing figures for the operator's guide, measured through the real service paths.

- ingest: SciFact abstracts uploaded through `POST /v1/ingest/jobs`, indexed by the Celery worker
  threads (parse → chunk → embed → upsert); chunks/s and the process's peak RSS.
- question overhead: `POST /v1/query` with an evidence threshold no chunk can reach, so every
  stage but the reader runs (auth, SQL, embed the question, filtered search, conversation rows);
  p50/p95 and the questions/s one process sustains sequentially.
- rerank cost: the cross-encoder stage for 20 candidates, with an untrained head of the real
  architecture (its scores are meaningless; only its cost is reported).

    python bench/sizing.py --data ../shared/data/scifact --docs 300 --questions 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.eval_answers import throwaway_service
from core.embedding import packaged_model_path
from core.settings import ReaderSettings, RetrievalSettings
from retrieval.rerank import CrossEncoderReranker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results/sizing.json"))
    args = parser.parse_args()

    corpus = [json.loads(line) for line in (args.data / "corpus.jsonl").read_text().splitlines()]
    corpus = corpus[: args.docs]
    queries = [
        json.loads(line)["text"] for line in (args.data / "queries.jsonl").read_text().splitlines()
    ]
    queries = queries[: args.questions]

    with throwaway_service(
        reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1"),
        # Nothing clears this bar, so questions stop before the reader (measured apart).
        retrieval=RetrievalSettings(min_score=2.0),
    ) as service:
        ingest = _ingest(service.client, service.headers, corpus)
        latencies = _questions(service.client, service.headers, queries)

    rerank_ms = _rerank_cost(queries[:10], [d["text"] for d in corpus[:20]])
    result = {
        "machine": {"cores": os.cpu_count(), "cpu": _cpu_name()},
        "embedding_model": "all-MiniLM-L6-v2",
        "ingest_documents": len(corpus),
        "ingest_chunks": ingest["chunks"],
        "ingest_seconds": round(ingest["seconds"], 2),
        "ingest_chunks_per_s": round(ingest["chunks"] / ingest["seconds"], 2),
        "question_overhead_p50_ms": round(statistics.median(latencies), 2),
        "question_overhead_p95_ms": round(_p95(latencies), 2),
        "questions_per_s_sequential": round(1000 / statistics.fmean(latencies), 1),
        "rerank_top20_p50_ms": round(statistics.median(rerank_ms), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "command": (
            f"python bench/sizing.py --data {args.data} --docs {args.docs} "
            f"--questions {args.questions}"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| figure | value |\n|---|---|")
    for name, value in result.items():
        if name not in ("command", "machine"):
            print(f"| {name} | {value} |")
    _plot(latencies, args.out.with_suffix(".png"))


def _ingest(
    client: TestClient, headers: dict[str, str], corpus: list[dict[str, str]]
) -> dict[str, float]:
    started = time.perf_counter()
    job_ids = []
    for start in range(0, len(corpus), 100):
        files = [
            ("files", (f"scifact/{d['_id']}.md", f"# {d['title']}\n\n{d['text']}\n".encode()))
            for d in corpus[start : start + 100]
        ]
        response = client.post("/v1/ingest/jobs", headers=headers, files=files)
        response.raise_for_status()
        job_ids.append(response.json()["id"])
    chunks = 0
    for job_id in job_ids:
        while True:
            job = client.get(f"/v1/ingest/jobs/{job_id}", headers=headers).json()
            if job["status"].startswith("completed"):
                chunks += sum(f["chunk_count"] for f in job["files"])
                break
            time.sleep(0.2)
    return {"chunks": chunks, "seconds": time.perf_counter() - started}


def _questions(client: TestClient, headers: dict[str, str], queries: list[str]) -> list[float]:
    latencies = []
    for question in queries:
        started = time.perf_counter()
        response = client.post("/v1/query", headers=headers, json={"question": question})
        response.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _rerank_cost(queries: list[str], passages: list[str]) -> list[float]:
    from sentence_transformers import CrossEncoder

    with tempfile.TemporaryDirectory() as folder:
        CrossEncoder(str(packaged_model_path("all-MiniLM-L6-v2")), num_labels=1).save(folder)
        reranker = CrossEncoderReranker(model_path=Path(folder))
        reranker.warm_up()
        costs = []
        for query in queries:
            started = time.perf_counter()
            reranker.rerank(query, passages)
            costs.append((time.perf_counter() - started) * 1000)
    return costs


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _plot(latencies: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(latencies, bins=30)
    ax.set_xlabel("POST /v1/query without the reader (ms)")
    ax.set_ylabel("questions")
    ax.set_title("ragkb question overhead (embed + search + HTTP + SQL)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
