"""`/v1/search` latency while a 1,000-file ingest runs, against the same searches idle.

The app is served by uvicorn on a loopback port (as `ragkb serve` does, with its Celery worker
threads in-process: the embedded default), with a base of SciFact documents indexed first. Then
searches (SciFact claims, `POST /v1/search`, keep-alive `http.client`) are timed one after
another while idle, and again while `--docs` other SciFact documents (Markdown files, uploaded in
jobs of 100 over HTTP) are ingested. Run once per `--layout`: `separate:NICE` (the default,
`RAGKB_EMBEDDING__INGEST_NICE=NICE`: ingest encodes on its own thread, and it and the embedded
worker's threads run at niceness +NICE; each lane's torch threads as `EmbeddingSettings.
lane_threads` sets them), `separate:NICE:Q/I` (the same with Q question and I ingest threads)
or `shared:SLICE` (`INGEST_NICE=0`: one encoder thread, questions first, ingest in slices of
SLICE texts). A slice as large as a whole task is the oldest behaviour, where a question's
encode waited behind every ingest batch queued before it.

    python bench/query_during_ingest.py --docs 1000 --base 300 --idle 300 \
        --layout separate:10 --layout separate:10:2/2 --layout shared:2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_latency import served

from api.eval_answers import throwaway_service
from core.settings import EmbeddingSettings, ReaderSettings


class _Searcher:
    """Keep-alive searches; a connection the server closed (uvicorn drops keep-alive ones idle
    for 5 s) is opened again, outside the timed span."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self._port = port
        self._headers = {**headers, "Content-Type": "application/json"}
        self._connection = http.client.HTTPConnection("127.0.0.1", port)

    def __call__(self, text: str) -> float:
        try:
            return self._timed(text)
        except (ConnectionError, http.client.HTTPException):
            self._connection.close()
            self._connection = http.client.HTTPConnection("127.0.0.1", self._port)
            self._connection.connect()
            return self._timed(text)

    def _timed(self, text: str) -> float:
        body = json.dumps({"query": text, "top_k": 10, "rerank": False})
        started = time.perf_counter()
        self._connection.request("POST", "/v1/search", body=body, headers=self._headers)
        response = self._connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"search answered {response.status}")
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self._connection.close()


def _upload(port: int, headers: dict[str, str], docs: list[dict[str, Any]]) -> list[str]:
    """Upload the documents in jobs of 100 files (multipart over HTTP); the job ids."""
    import httpx

    job_ids = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
        for start in range(0, len(docs), 100):
            files = [
                ("files", (f"ingest/{d['_id']}.md", f"# {d['title']}\n\n{d['text']}\n".encode()))
                for d in docs[start : start + 100]
            ]
            response = client.post("/v1/ingest/jobs", headers=headers, files=files)
            response.raise_for_status()
            job_ids.append(response.json()["id"])
    return job_ids


def _jobs_done(port: int, headers: dict[str, str], job_ids: list[str]) -> tuple[bool, int]:
    import httpx

    done, chunks = True, 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for job_id in job_ids:
            body = client.get(
                f"/v1/ingest/jobs/{job_id}?include_files=false", headers=headers
            ).json()
            done = done and body["status"].startswith("completed")
            chunks += body["progress"]["chunks_indexed"]
    return done, chunks


def measure(
    corpus: list[dict[str, Any]], claims: list[str], *, docs: int, base: int, idle: int,
    slice_size: int, ingest_nice: int, model: str, threads: tuple[int, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    base_docs, ingest_docs = corpus[:base], corpus[base : base + docs]
    embedding = EmbeddingSettings(
        model=model, ingest_slice=slice_size, ingest_nice=ingest_nice,
        query_threads=threads[0] if threads else None,
        ingest_threads=threads[1] if threads else None,
    )  # fmt: skip
    with throwaway_service(
        reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1"),
        embedding=embedding,
    ) as service:
        headers = {**service.headers}
        with served(service.runtime) as port:
            job_ids = _upload(port, headers, base_docs)
            while not _jobs_done(port, headers, job_ids)[0]:
                time.sleep(0.5)
            search = _Searcher(port, headers)
            for text in claims[:5]:  # warm-up
                search(text)
            idle_ms = [search(t) for t in claims[5 : 5 + idle]]

            started = time.perf_counter()
            uploaded: list[str] = []
            uploader = threading.Thread(
                target=lambda: uploaded.extend(_upload(port, headers, ingest_docs))
            )
            uploader.start()
            busy_ms: list[float] = []
            chunks = 0
            n = 5 + idle
            last_check = 0.0
            while True:
                busy_ms.append(search(claims[n % len(claims)]))
                n += 1
                time.sleep(0.05)  # a question every ~50 ms plus its own time
                if time.perf_counter() - last_check > 2 and not uploader.is_alive():
                    last_check = time.perf_counter()
                    finished, chunks = _jobs_done(port, headers, uploaded)
                    if finished:
                        break
            ingest_s = time.perf_counter() - started
            search.close()
    idle_p95 = float(np.percentile(idle_ms, 95))
    busy_p95 = float(np.percentile(busy_ms, 95))
    return {
        "layout": _layout(slice_size, ingest_nice, threads),
        "ingest_slice": slice_size,
        "ingest_nice": ingest_nice,
        # (question, ingest) torch threads; with a shared lane torch's default for both.
        "lane_threads": list(embedding.lane_threads()) if ingest_nice else None,
        "files_ingested": len(ingest_docs),
        "chunks_ingested": chunks,
        "ingest_seconds": round(ingest_s, 1),
        "ingest_chunks_per_s": round(chunks / ingest_s, 1),
        "idle_searches": len(idle_ms),
        "idle_p50_ms": round(statistics.median(idle_ms), 1),
        "idle_p95_ms": round(idle_p95, 1),
        "busy_searches": len(busy_ms),
        "busy_p50_ms": round(statistics.median(busy_ms), 1),
        "busy_p95_ms": round(busy_p95, 1),
        "busy_max_ms": round(max(busy_ms), 1),
        "p95_ratio_busy_to_idle": round(busy_p95 / idle_p95, 2),
    }


Layout = tuple[int, int, tuple[int, int] | None]


def _parse_layout(text: str) -> Layout:
    """`shared:SLICE` → (SLICE, 0, None); `separate:NICE[:Q/I]` → (2, NICE, (Q, I) or None)."""
    kind, _, value = text.partition(":")
    if kind == "shared":
        return int(value), 0, None
    if kind == "separate":
        nice, _, threads = value.partition(":")
        if not threads:
            return 2, int(nice), None
        question, _, ingest = threads.partition("/")
        return 2, int(nice), (int(question), int(ingest))
    raise SystemExit(f"unknown layout {text!r}: shared:SLICE or separate:NICE[:Q/I]")


def _layout(slice_size: int, ingest_nice: int, threads: tuple[int, int] | None = None) -> str:
    if not ingest_nice:
        return f"shared:{slice_size}"
    return f"separate:{ingest_nice}" + (f":{threads[0]}/{threads[1]}" if threads else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--base", type=int, default=300)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument(
        "--layout",
        action="append",
        dest="layouts",
        help="`shared:SLICE` (one encoder thread, ingest in slices of SLICE texts) or "
        "`separate:NICE[:Q/I]` (ingest on its own thread, niceness +NICE, Q question and I "
        "ingest torch threads); repeatable",
    )
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/query-during-ingest.json"))
    args = parser.parse_args()
    layouts = [_parse_layout(text) for text in args.layouts or ["separate:10", "shared:2"]]
    corpus = [json.loads(line) for line in (args.data / "corpus.jsonl").read_text().splitlines()]
    random.Random(args.seed).shuffle(corpus)
    claims = [
        json.loads(line)["text"] for line in (args.data / "queries.jsonl").read_text().splitlines()
    ]
    rows = [
        measure(
            corpus, claims, docs=args.docs, base=args.base, idle=args.idle,
            slice_size=slice_size, ingest_nice=nice, model=args.model, threads=threads,
        )
        for slice_size, nice, threads in layouts
    ]  # fmt: skip
    result = {
        "machine": {"cores": os.cpu_count(), "load_average_1min_at_end": os.getloadavg()[0]},
        "embedding_model": args.model,
        "rows": rows,
        "command": f"python bench/query_during_ingest.py --docs {args.docs} --base {args.base} "
        f"--idle {args.idle} --model {args.model} "
        + " ".join(f"--layout {_layout(*x)}" for x in layouts),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| layout | idle p50 / p95 ms | during ingest p50 / p95 / max ms | p95 ratio | "
          "ingest chunks/s |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['idle_p50_ms']} / {r['idle_p95_ms']} | "
            f"{r['busy_p50_ms']} / {r['busy_p95_ms']} / {r['busy_max_ms']} | "
            f"{r['p95_ratio_busy_to_idle']} | {r['ingest_chunks_per_s']} |"
        )


if __name__ == "__main__":
    main()
