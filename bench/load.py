"""Load test: concurrent clients against a real `ragkb serve` (embedded default) on loopback.

Requests past the admission gate (RAGKB_HTTP__MAX_IN_FLIGHT, __MAX_IN_FLIGHT_PER_TENANT) are
shed with 503/429 and Retry-After; they are counted apart from the admitted requests, whose
latency the table reports, and their client waits Retry-After before its next request.

The mix is mostly retrieval-only queries (the evidence threshold is set above any cosine, so
every query embeds, searches the tenant's chunks and answers "not in the sources" without the
CPU reader, which would take ~10 s an answer), plus document listings, job polls and small
ingests. Each client loops until the deadline, so the run stops by itself.

    python bench/load.py --clients 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["How many vacation days?", "Who approves expenses?", "What is the VPN policy?",
             "When are salaries paid?", "How do I report an incident?"]  # fmt: skip
SEED_DOCS = {f"handbook/{i:02d}.md": f"# Policy {i}\n\nRule {i}: staff get {i + 20} days of paid "
             "vacation, expenses are approved by the team lead, the VPN is mandatory.\n"
             for i in range(20)}  # fmt: skip


def _cli(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-c", "from api.cli import main; main()", *args]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _start_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        command = [sys.executable, "-c", "from api.cli import main; main()", "serve"]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['RAGKB_API_PORT']}/readyz"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ragkb serve exited: see {log}")
        try:
            if httpx.get(url, timeout=2).is_success:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("ragkb serve did not become ready")


async def _client(
    http: httpx.AsyncClient, stop_at: float, rng: random.Random, job_ids: list[str],
    samples: dict[str, list[float]], errors: dict[str, int], timeline: list[tuple[float, float]],
    started: float, shed: dict[str, list[float]], timeouts: dict[str, int],
) -> None:  # fmt: skip
    while time.monotonic() < stop_at:
        roll = rng.random()
        began = time.perf_counter()
        if roll < 0.70:
            kind = "query"
            request = http.post("/v1/query", json={"question": rng.choice(QUESTIONS)})
        elif roll < 0.85:
            kind = "list_documents"
            request = http.get("/v1/documents")
        elif roll < 0.95 and job_ids:
            kind = "read_job"
            request = http.get(f"/v1/ingest/jobs/{rng.choice(job_ids)}")
        else:
            kind = "ingest"
            body = f"# Note {rng.random()}\n\nA small note about the vacation policy.\n".encode()
            path = f"notes/{rng.randrange(200)}.md"
            request = http.post("/v1/ingest/jobs", files=[("files", (path, body))])
        retry_after: float | None = None
        try:
            response = await request
            ok = response.status_code < 400
            if response.status_code in (429, 503) and "Retry-After" in response.headers:
                retry_after = float(response.headers["Retry-After"])
            if ok and kind == "ingest":
                job_ids.append(response.json()["id"])
        except httpx.TimeoutException:
            ok = False
            timeouts[kind] += 1
        except httpx.HTTPError:
            ok = False
        elapsed_ms = (time.perf_counter() - began) * 1000
        timeline.append((time.monotonic() - started, elapsed_ms))
        if retry_after is not None:
            # Shed: answered at once; a well-behaved client comes back after Retry-After.
            shed[kind].append(elapsed_ms)
            await asyncio.sleep(min(retry_after, max(0.0, stop_at - time.monotonic())))
            continue
        samples[kind].append(elapsed_ms)
        if not ok:
            errors[kind] += 1


async def _run(base_url: str, key: str, clients: int, seconds: float) -> dict[str, object]:
    samples: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    shed: dict[str, list[float]] = defaultdict(list)
    timeouts: dict[str, int] = defaultdict(int)
    timeline: list[tuple[float, float]] = []
    job_ids: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    # A 30 s timeout, as the clients of the overloaded service had.
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=30, limits=limits
    ) as http:
        seed = await http.post(
            "/v1/ingest/jobs", files=[("files", (p, t.encode())) for p, t in SEED_DOCS.items()]
        )
        seed.raise_for_status()
        job_ids.append(seed.json()["id"])
        while (await http.get(f"/v1/ingest/jobs/{job_ids[0]}")).json()["status"] != "completed":
            await asyncio.sleep(0.5)
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(
            _client(http, stop_at, random.Random(i), job_ids, samples, errors, timeline, started,
                    shed, timeouts)
            for i in range(clients)
        ))  # fmt: skip
        wall_s = time.monotonic() - started
    every = sorted(ms for values in samples.values() for ms in values)
    return {
        "wall_s": wall_s,
        "samples": samples,
        "errors": dict(errors),
        "timeline": timeline,
        "all": every,
        "shed": shed,
        "timeouts": dict(timeouts),
    }


def _admission_settings() -> dict[str, float]:
    """The admission gate the server ran with (RAGKB_HTTP__* from the environment, else the
    defaults)."""
    from core.settings import HttpSettings

    http = HttpSettings()
    names = ("MAX_IN_FLIGHT", "MAX_IN_FLIGHT_PER_TENANT", "ADMISSION_QUEUE", "ADMISSION_WAIT_S")
    values = {n.lower(): getattr(http, n.lower()) for n in names}
    for name in names:
        if f"RAGKB_HTTP__{name}" in os.environ:
            values[name.lower()] = float(os.environ[f"RAGKB_HTTP__{name}"])
    return values


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    port = 18000 + os.getpid() % 1000
    with tempfile.TemporaryDirectory(prefix="ragkb-load-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "DO_NOT_TRACK": "1",
            "RAGKB_DATA_DIR": str(Path(tmp) / "data"),
            "RAGKB_API_PORT": str(port),
            "RAGKB_READER__MANAGED": "false",
            # Above any cosine: every query is retrieval only (no CPU reader).
            "RAGKB_RETRIEVAL__MIN_SCORE": "1.01",
            # The bench measures the service, not the tenant's buckets.
            "RAGKB_LIMITS__QUERIES_PER_MINUTE": "1000000",
            "RAGKB_LIMITS__QUERY_BURST": "1000000",
            "RAGKB_LIMITS__INGEST_PER_MINUTE": "1000000",
            "RAGKB_LIMITS__INGEST_BURST": "1000000",
        }
        _cli(env, "tenant", "create", "load")
        key = _cli(env, "key", "create", "--tenant", "load").splitlines()[-1]
        server = _start_server(env, Path(tmp) / "serve.log")
        try:
            run = asyncio.run(_run(f"http://127.0.0.1:{port}", key, args.clients, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=60)
    samples: dict[str, list[float]] = run["samples"]  # type: ignore[assignment]
    errors: dict[str, int] = run["errors"]  # type: ignore[assignment]
    every: list[float] = run["all"]  # type: ignore[assignment]
    wall_s: float = run["wall_s"]  # type: ignore[assignment]
    shed: dict[str, list[float]] = run["shed"]  # type: ignore[assignment]
    timeouts: dict[str, int] = run["timeouts"]  # type: ignore[assignment]
    shed_ms = [ms for values in shed.values() for ms in values]
    command = shlex.join(["python", "bench/load.py", "--clients", str(args.clients),
                          "--seconds", f"{args.seconds:g}"])  # fmt: skip
    result = {
        "clients": args.clients,
        "seconds": round(wall_s, 1),
        "requests": len(every),
        "errors": sum(errors.values()),
        "timeouts": sum(timeouts.values()),
        "p50_ms": round(_percentile(every, 0.50), 1),
        "p95_ms": round(_percentile(every, 0.95), 1),
        "requests_per_s": round(len(every) / wall_s, 1),
        "shed": len(shed_ms),
        "shed_p95_ms": round(_percentile(shed_ms, 0.95), 1),
        "note": "requests, p50_ms, p95_ms and by_kind count admitted requests only; shed ones "
        "(429/503 with Retry-After from the admission gate) are counted apart, and their client "
        "waits Retry-After before its next request",
        "command": command,
        "by_kind": {
            kind: {
                "requests": len(values),
                "errors": errors.get(kind, 0),
                "shed": len(shed.get(kind, [])),
                "p50_ms": round(_percentile(values, 0.50), 1),
                "p95_ms": round(_percentile(values, 0.95), 1),
                "mean_ms": round(statistics.fmean(values), 1),
            }
            for kind, values in sorted(samples.items())
        },
        "admission": _admission_settings(),
        "load_average_at_start": os.getloadavg(),
        "setup": "ragkb serve, embedded default (SQLite, folder broker, qdrant-edge, MiniLM), "
        "reader off, retrieval-only queries; 2 shared CPU cores",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| kind | admitted | shed | errors | p50 ms | p95 ms |\n|---|---|---|---|---|---|")
    for kind, row in result["by_kind"].items():  # type: ignore[attr-defined]
        print(
            f"| {kind} | {row['requests']} | {row['shed']} | {row['errors']} | {row['p50_ms']} "
            f"| {row['p95_ms']} |"
        )
    print(f"| all | {result['requests']} | {result['shed']} | {result['errors']} | "
          f"{result['p50_ms']} | {result['p95_ms']} |")  # fmt: skip
    print(f"shed answered in p95 {result['shed_p95_ms']} ms; {result['timeouts']} client timeouts")
    print(
        f"{result['requests_per_s']} requests/s over {result['seconds']} s, {args.clients} clients"
    )
    _plot(run["timeline"], samples, args.out.with_suffix(".png"), args.clients)  # type: ignore[arg-type]


def _plot(
    timeline: list[tuple[float, float]], samples: dict[str, list[float]], path: Path, clients: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    seconds = [int(t) for t, _ in timeline]
    per_second = [seconds.count(s) for s in range(max(seconds) + 1)] if seconds else []
    left.plot(range(len(per_second)), per_second)
    left.set_xlabel("second")
    left.set_ylabel("requests completed")
    left.set_title(f"throughput, {clients} clients")
    kinds = sorted(samples)
    right.boxplot([samples[k] for k in kinds], tick_labels=kinds, showfliers=False)
    right.set_ylabel("latency (ms)")
    right.set_title("latency by request kind")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
