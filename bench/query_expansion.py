"""What multi-query rewriting and HyDE give on SciFact train, through `/v1/search`, with the real
CPU reader writing the extra queries. Every configuration runs on the same fixed random sample of
questions (the reader costs seconds per question on this CPU), against one index.

    python bench/query_expansion.py --corpus ../shared/data/scifact --sample 60 \\
        --workdir /tmp/scifact-work

`--workdir` reuses an index built by `ragkb eval retrieval --workdir` (or builds one there).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from api.eval_answers import throwaway_service
from api.eval_retrieval import (
    RetrievalConfig,
    bar_chart,
    ingest_corpus,
    load_beir,
    markdown_table,
    run_config,
)
from core.settings import ReaderSettings, Settings
from generation.reader_model import assemble_reader_model
from generation.reader_server import ReaderServer

CONFIGS = (
    RetrievalConfig("hybrid (default)", "hybrid"),
    RetrievalConfig("hybrid + multi-query", "hybrid", overrides={"expansion": "multi_query"}),
    RetrievalConfig("hybrid + HyDE", "hybrid", overrides={"expansion": "hyde"}),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--split", default="train")
    parser.add_argument("--sample", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results/query-expansion.json"))
    args = parser.parse_args()

    beir = load_beir(args.corpus, args.split)
    picked = sorted(random.Random(args.seed).sample(sorted(beir.queries), args.sample))
    sample = replace(
        beir,
        queries={q: beir.queries[q] for q in picked},
        qrels={q: beir.qrels[q] for q in picked},
    )
    model_file = assemble_reader_model(Settings().reader_model_file)
    reader = ReaderSettings(
        managed=False, base_url=f"http://127.0.0.1:{_free_port()}/v1", temperature=0
    )
    with (
        tempfile.TemporaryDirectory() as logs,
        ReaderServer(settings=reader, model_file=model_file, log_file=Path(logs) / "reader.log"),
        throwaway_service(workdir=args.workdir, reader=reader) as service,
    ):
        if service.runtime.store.count(tenant_id=service.tenant_id) == 0:
            ingest_corpus(service, beir)
        results = []
        for config in CONFIGS:
            results.append(run_config(service, sample, config))
            print(f"{config.name}: nDCG@10 {results[-1]['ndcg@10']}", flush=True)
    report = {
        "corpus": str(args.corpus),
        "split": args.split,
        "queries": len(sample.queries),
        "reader": "qwen2.5-coder-1.5b-instruct Q4_K_M, llama.cpp, CPU",
        "results": results,
        "command": shlex.join(["python", "bench/query_expansion.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(results)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    bar_chart(results, args.out.with_suffix(".png"), f"{args.corpus.name}: {args.sample} queries")


if __name__ == "__main__":
    main()
