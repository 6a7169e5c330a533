"""The capacity model's arithmetic (bench/capacity.py) against cases worked by hand."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "capacity.py"
    spec = importlib.util.spec_from_file_location("bench_capacity", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


capacity = _load()

COSTS = capacity.IngestCosts(
    parse_s_per_file=0.1,
    parse_cpu_s_per_file=0.1,
    encode_s_per_token=0.001,
    encode_cpu_s_per_token=0.002,
    upsert_s_per_point=0.01,
    cores_per_worker=2,
)
# 4 chunks of 100 tokens per document: 400 tokens to encode, 4 points to write.
WORK = capacity.Workload(
    documents=1_000_000, chunks_per_doc=4, tokens_per_chunk=100, answer_tokens=0, p95_target_s=1
)


def test_erlang_c_matches_the_closed_forms() -> None:
    # M/M/1: P(wait) = rho. M/M/2 at a = 1 Erlang: (1/2 * 2/1) / (1 + 1 + 1) = 1/3.
    assert capacity.erlang_c(1, 0.5) == pytest.approx(0.5)
    assert capacity.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert capacity.erlang_c(2, 2.0) == 1.0


def test_wait_quantile_is_the_erlang_c_tail() -> None:
    # M/M/2, lambda = mu = 1: P(W > t) = 1/3 e^{-t}; p95 where that is 0.05: t = ln(20/3).
    assert capacity.wait_quantile(2, 1.0, 1.0) == pytest.approx(math.log(20 / 3))
    # M/M/1, rho = 0.5, mu = 1: P(W > t) = 0.5 e^{-0.5 t}: t = 2 ln 10.
    assert capacity.wait_quantile(1, 0.5, 1.0) == pytest.approx(2 * math.log(10))
    # Light load: fewer than 5% of arrivals wait at all.
    assert capacity.wait_quantile(4, 0.1, 1.0) == 0.0
    assert capacity.wait_quantile(1, 1.0, 1.0) == math.inf


def test_cpu_ingest_is_bound_by_the_workers_cores() -> None:
    # N = 2 replicas x 3 threads, local encode:
    #   encoder thread: 2 / (400 x 0.001) = 5 docs/s
    #   threads: 6 / (0.1 + 0.4 + 4 x 0.01) = 11.11 docs/s
    #   CPU: 2 x 2 cores / (0.1 + 400 x 0.002) = 4.444 docs/s   <- the bottleneck
    #   store: (1 / 0.01) points/s / 4 = 25 docs/s
    dep = capacity.Deployment(workers=2, threads=3, gpus=0, readers=0, api_replicas=1)
    pools = capacity.ingest_pools(COSTS, dep, WORK)
    assert pools == pytest.approx(
        {
            "worker encoder thread": 5.0,
            "worker threads": 6 / 0.54,
            "worker CPU": 4 / 0.9,
            "vector store writes": 25.0,
        }
    )
    projection = capacity.ingest_projection(COSTS, dep, WORK)
    assert projection["bottleneck"] == "worker CPU"
    assert projection["hours"] == pytest.approx(1_000_000 / (4 / 0.9) / 3600)  # 62.5 h


def test_an_embedding_gpu_moves_the_bottleneck() -> None:
    # One GPU at 4,000 tokens/s: 10 docs/s; a thread now waits 400 / 4000 = 0.1 s to encode,
    # so threads: 6 / (0.1 + 0.1 + 0.04) = 25, CPU: 4 / 0.1 = 40, store 25.
    dep = capacity.Deployment(
        workers=2, threads=3, gpus=1, readers=0, api_replicas=1, gpu_tokens_per_s=4000
    )
    projection = capacity.ingest_projection(COSTS, dep, WORK)
    assert projection["pools_docs_per_s"] == pytest.approx(
        {"embedding GPUs": 10.0, "worker threads": 25.0, "worker CPU": 40.0,
         "vector store writes": 25.0}
    )  # fmt: skip
    assert projection["bottleneck"] == "embedding GPUs"
    # Four GPUs: 40 docs/s, and the threads and the store (25 each) are the limit.
    four = capacity.ingest_projection(
        COSTS,
        capacity.Deployment(
            workers=2, threads=3, gpus=4, readers=0, api_replicas=1, gpu_tokens_per_s=4000
        ),
        WORK,
    )
    assert four["docs_per_s"] == pytest.approx(25.0)
    assert four["bottleneck"] in {"worker threads", "vector store writes"}


def test_sustainable_rate_meets_the_p95_target_exactly() -> None:
    # One API replica, mean 0.1 s (mu = 10/s), p95 service 0.2 s, no reader. At lambda = 5
    # (rho = 0.5) the p95 wait is ln(0.5 / 0.05) / (10 - 5) = ln(10) / 5: a target of
    # 0.2 + ln(10)/5 is met up to exactly 5 questions/s.
    costs = capacity.QueryCosts(api_mean_s=0.1, api_p95_s=0.2, reader=())
    dep = capacity.Deployment(workers=1, threads=1, gpus=0, readers=0, api_replicas=1)
    work = capacity.Workload(1, 1, 1, 0, p95_target_s=0.2 + math.log(10) / 5)
    result = capacity.query_projection(costs, dep, work)
    assert result["questions_per_s"] == pytest.approx(5.0, rel=1e-6)
    assert result["bottleneck"] == "API replicas"
    # A target below one unloaded question's p95 sustains nothing.
    tight = capacity.query_projection(costs, dep, capacity.Workload(1, 1, 1, 0, 0.19))
    assert tight["questions_per_s"] == 0.0


def test_the_reader_station_limits_when_it_is_the_slower() -> None:
    # One reader GPU at batch 2, each answer 1 s (TTFT 0, 100 tokens x 10 ms) with p95 1 s:
    # 2 servers at mu = 1. API: 10 replicas at 1 ms (never waits). Target 1.001 + ln(20/3):
    # the reader's M/M/2 p95 wait is ln(20/3) at lambda = 1 (the first test's case).
    costs = capacity.QueryCosts(
        api_mean_s=0.001, api_p95_s=0.001, reader=(capacity.ReaderPoint(2, 0.0, 0.0, 0.01),)
    )
    dep = capacity.Deployment(workers=1, threads=1, gpus=0, readers=1, api_replicas=10)
    work = capacity.Workload(1, 1, 1, answer_tokens=100, p95_target_s=1.001 + math.log(20 / 3))
    result = capacity.query_projection(costs, dep, work)
    assert result["questions_per_s"] == pytest.approx(1.0, rel=1e-4)
    assert result["bottleneck"] == "reader"
    assert result["ceiling_questions_per_s"] == pytest.approx(2.0)
    assert result["reader_batch"] == 2
