"""Time to first token and tokens/s of the reader: the figures behind ReaderSettings' timeouts.

Starts the managed CPU reader (llama.cpp, Qwen2.5-Coder-1.5B Q4_K_M) unless --reader-url is
given, and streams answers to prompts of two sizes (a bare question; a question with sources as
`/v1/query` builds them, ~4 datamarked chunks). The machine's load average is recorded with the
figures: on a shared machine they are the busy case the timeouts must allow for.

    python bench/reader_speed.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from core.settings import ReaderSettings, Settings
from generation.client import ChatClient, StreamStats
from generation.prompt import build_messages
from generation.reader_model import assemble_reader_model
from generation.reader_server import ReaderServer
from retrieval.retriever import RetrievedChunk

PASSAGE = (
    "The Rotterdam warehouse shipped 48,200 parcels in September, up from 41,500 in August. "
    "Returns fell to 2.1% after the new packaging line opened, and the night shift was cut from "
    "three to two crews while the Lyon site took over the southern routes. "
)


def _chunk(number: int) -> RetrievedChunk:
    text = PASSAGE * 2
    return RetrievedChunk(
        point_id=str(number), document_id=f"d{number}", path=f"reports/{number}.md", title=None,
        page=None, section=None, char_start=0, char_end=len(text), text=text,
        retrieval_score=0.9,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--reader-url")
    parser.add_argument("--out", type=Path, default=Path("bench/results/reader-speed.json"))
    args = parser.parse_args()
    question = "How many parcels did the Rotterdam warehouse ship in September, and why?"
    prompts = {
        "bare question": [{"role": "user", "content": question}],
        "question + 4 sources": build_messages(
            question, [_chunk(n) for n in range(4)], datamark=True
        ),
    }
    server = None
    url = args.reader_url or "http://127.0.0.1:8093/v1"
    settings = ReaderSettings(
        base_url=url, max_tokens=args.max_tokens, temperature=0, timeout_s=600,
        min_tokens_per_s=0.1,
    )  # fmt: skip
    if args.reader_url is None:
        model_file = assemble_reader_model(Settings(data_dir=Path("var")).reader_model_file)
        server = ReaderServer(
            settings=settings, model_file=model_file,
            log_file=Path(tempfile.mkdtemp()) / "reader.log",
        )  # fmt: skip
        server.start()
    load_before = os.getloadavg()[0]
    rows = []
    try:
        client = ChatClient(settings)
        for name, messages in prompts.items():
            for _ in range(args.runs):
                stats = StreamStats()
                for _ in client.stream(messages, stats):
                    pass
                assert stats.ttft_ms is not None
                assert stats.generation_ms is not None
                decode_s = (stats.generation_ms - stats.ttft_ms) / 1000
                rows.append(
                    {
                        "prompt": name,
                        "prompt_tokens": stats.prompt_tokens,
                        "completion_tokens": stats.completion_tokens,
                        "ttft_s": round(stats.ttft_ms / 1000, 2),
                        "tokens_per_s": round((stats.completion_tokens - 1) / decode_s, 1)
                        if decode_s > 0
                        else None,
                    }
                )
                print(rows[-1])
    finally:
        if server is not None:
            server.stop()
    summary = {}
    for name in prompts:
        mine = [r for r in rows if r["prompt"] == name]
        speeds = [r["tokens_per_s"] for r in mine if r["tokens_per_s"]]
        summary[name] = {
            "prompt_tokens": mine[0]["prompt_tokens"],
            "ttft_s_median": statistics.median(r["ttft_s"] for r in mine),
            "ttft_s_max": max(r["ttft_s"] for r in mine),
            "tokens_per_s_median": statistics.median(speeds) if speeds else None,
            "tokens_per_s_min": min(speeds) if speeds else None,
        }
    result = {
        "reader": "llama.cpp server, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 2 threads"
        if server
        else url,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "summary": summary,
        "rows": rows,
        "command": f"python bench/reader_speed.py --runs {args.runs} "
        f"--max-tokens {args.max_tokens}",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| prompt | prompt tokens | TTFT median / max | tokens/s median / min |")
    print("|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['prompt_tokens']} | {s['ttft_s_median']} / {s['ttft_s_max']} s | "
            f"{s['tokens_per_s_median']} / {s['tokens_per_s_min']} |"
        )


if __name__ == "__main__":
    main()
