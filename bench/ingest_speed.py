"""Ingest throughput, in one run, on the same SciFact documents (written as Markdown files):

(a) the bare encoder: sentence-transformers `encode` on exactly the texts ragkb embeds;
(b) ragkb end to end: `POST /v1/ingest/jobs` into the real app in-process (Celery worker
    threads, parse → chunk → embed → upsert into embedded Qdrant → SQL), from the first
    upload to the last file done;
(c) LlamaIndex's default ingestion pipeline: SimpleDirectoryReader → SentenceSplitter →
    HuggingFaceEmbedding (the same MiniLM folder, offline) → QdrantVectorStore (in memory).

    python bench/ingest_speed.py --data ../shared/data/scifact --docs 1000

(`-m`, not a path: run as a path, this file would shadow the `ingest` package.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from api.eval_answers import throwaway_service
from core.embedding import packaged_model_path
from core.settings import ReaderSettings, Settings
from ingest.chunk import chunk_document
from ingest.parse import parse_document
from ingest.pipeline import embedding_text

MODEL = "all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    args = parser.parse_args()

    lines = (args.data / "corpus.jsonl").read_text().splitlines()[: args.docs]
    corpus = [json.loads(line) for line in lines]
    with tempfile.TemporaryDirectory(prefix="ragkb-bench-ingest-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for doc in corpus:
            (folder / f"{doc['_id']}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n")
        files = sorted(folder.iterdir())

        bare = _bare_encode(files)
        ragkb = _ragkb(files)
        ragkb_rss_mb = _peak_rss_mb()
        llama = _llamaindex(folder)

    result: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "cpu": _cpu_name()},
        "embedding_model": MODEL,
        "documents": len(corpus),
        "chunks": bare["chunks"],
        "bare_encode_seconds": round(bare["seconds"], 2),
        "bare_encode_chunks_per_s": round(bare["chunks"] / bare["seconds"], 2),
        "ragkb_chunks": ragkb["chunks"],
        "ragkb_seconds": round(ragkb["seconds"], 2),
        "ragkb_chunks_per_s": round(ragkb["chunks"] / ragkb["seconds"], 2),
        "llamaindex_nodes": llama["chunks"],
        "llamaindex_seconds": round(llama["seconds"], 2),
    }
    result["ratio_to_bare"] = round(
        result["ragkb_chunks_per_s"] / result["bare_encode_chunks_per_s"], 3
    )
    result["ratio_to_llamaindex"] = round(ragkb["seconds"] / llama["seconds"], 3)
    # ru_maxrss is the process's peak so far: taken after ragkb's run (it includes the bare
    # encoder's copy of the model), and again at the end (LlamaIndex's run added).
    result["peak_rss_mb"] = ragkb_rss_mb
    result["peak_rss_mb_with_llamaindex"] = _peak_rss_mb()
    result["command"] = f"python bench/ingest_speed.py --data {args.data} --docs {args.docs}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| figure | value |\n|---|---|")
    for name, value in result.items():
        if name not in ("command", "machine"):
            print(f"| {name} | {value} |")
    _plot(result, args.out.with_suffix(".png"))


def _bare_encode(files: list[Path]) -> dict[str, float]:
    """ragkb's own chunks (parsed and chunked outside the timer), encoded in one call."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_path(MODEL)), device="cpu")
    chunking = Settings().ingest.chunking

    def count(text: str) -> int:
        return len(model.tokenizer.tokenize(text))

    texts: list[str] = []
    for path in files:
        parsed = parse_document(path.name, path.read_bytes())
        chunks = chunk_document(
            parsed,
            max_tokens=chunking.max_tokens,
            overlap_tokens=chunking.overlap_tokens,
            count_tokens=count,
        )
        texts.extend(embedding_text(c) for c in chunks)
    model.encode(texts[:32], batch_size=32)  # warm-up, outside the timer
    started = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    return {"chunks": len(texts), "seconds": time.perf_counter() - started}


def _ragkb(files: list[Path]) -> dict[str, float]:
    with throwaway_service(
        reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1")
    ) as service:
        started = time.perf_counter()
        job_ids = []
        for start in range(0, len(files), 100):
            batch = files[start : start + 100]
            response = service.client.post(
                "/v1/ingest/jobs",
                headers=service.headers,
                files=[("files", (f"scifact/{p.name}", p.read_bytes())) for p in batch],
            )
            response.raise_for_status()
            job_ids.append(response.json()["id"])
        chunks = 0
        for job_id in job_ids:
            while True:
                job = service.client.get(f"/v1/ingest/jobs/{job_id}", headers=service.headers)
                body = job.json()
                if body["status"].startswith("completed"):
                    errors = {f["path"]: f["error"] for f in body["files"] if f["error"]}
                    if body["progress"]["failed"]:
                        raise RuntimeError(f"files failed in job {job_id}: {errors}")
                    chunks += body["progress"]["chunks_indexed"]
                    break
                time.sleep(0.1)
        return {"chunks": chunks, "seconds": time.perf_counter() - started}


def _llamaindex(folder: Path) -> dict[str, float]:
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    embed_model = HuggingFaceEmbedding(model_name=str(packaged_model_path(MODEL)), device="cpu")
    embed_model.get_text_embedding("warm-up")  # load outside the timer, as ragkb's is
    client = QdrantClient(location=":memory:")
    started = time.perf_counter()
    documents = SimpleDirectoryReader(str(folder)).load_data()
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(), embed_model],
        vector_store=QdrantVectorStore(client=client, collection_name="bench"),
    )
    nodes = pipeline.run(documents=documents)
    seconds = time.perf_counter() - started
    client.close()
    return {"chunks": len(nodes), "seconds": seconds}


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rates = {
        "bare encode": result["bare_encode_chunks_per_s"],
        "ragkb end to end": result["ragkb_chunks_per_s"],
    }
    left.bar(list(rates), list(rates.values()), color=["#999999", "#1f77b4"])
    left.set_ylabel("chunks/s")
    left.set_title(f"ragkb at {result['ratio_to_bare']:.2f}x the bare encoder")
    seconds = {"ragkb": result["ragkb_seconds"], "LlamaIndex": result["llamaindex_seconds"]}
    right.bar(list(seconds), list(seconds.values()), color=["#1f77b4", "#ff7f0e"])
    right.set_ylabel("seconds")
    right.set_title(f"{result['documents']} SciFact docs: time to index")
    fig.suptitle(f"{result['machine']['cores']} cores, {result['machine']['cpu']}, {MODEL}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
