"""Isolation at volume: ≥ 10,000 queries across tenants and end users (searches, and end
users' questions, follow-ups and chat completions answered by the echo reader, which repeats
its whole prompt), every hit traced back to its owner (see api/eval_isolation.World), between
rounds of ingest, re-ingest and delete; then the statistics probe (api/eval_statistics): each
tenant's scores for a codename, before and after another tenant uploads and deletes 40
documents holding it.

A share of the queries (`--answer-share`, 0.3) are end users' questions, follow-ups (by the
end user who started the conversation, or by another one, which must get a 404) and chat
completions, answered by the echo reader, which repeats its whole prompt: every response and
stored turn is checked for text its end user may not read (api/eval_end_users.py).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python bench/isolation.py --tenants 5 --queries 10000

One OpenMP thread, waiting passively: on a shared machine torch's spinning thread teams made the
run ~10x slower (the bench checks leaks, not speed). Set here too, before torch is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import random
import time
from pathlib import Path

from api.echo_reader import ECHO_CITATIONS, EchoReader
from api.eval_answers import throwaway_service
from api.eval_end_users import EndUsers
from api.eval_isolation import Client, World, random_principals
from api.eval_statistics import ProbeResult, probe_statistics
from core.settings import LimitSettings, ReaderSettings, RetrievalSettings
from core.tenancy import create_tenant, issue_api_key

PATHS = [f"team{i}/doc{j}.md" for i in range(4) for j in range(5)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--probe-rounds", type=int, default=5, help="statistics probes (observer, writer pairs)"
    )
    parser.add_argument(
        "--answer-share", type=float, default=0.3, help="Queries that are end users' questions."
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/isolation.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    random.seed(args.seed)
    unlimited = LimitSettings(
        queries_per_minute=10**9, query_burst=10**9, ingest_per_minute=10**9, ingest_burst=10**9
    )
    started = time.perf_counter()
    with (
        EchoReader() as echo,
        throwaway_service(
            reader=ReaderSettings(managed=False, base_url=echo.base_url, max_retries=0),
            citations=ECHO_CITATIONS,
            limits=unlimited,
            # Every search reads its IDF from the store: a remembered one would hide a leak.
            retrieval=RetrievalSettings(idf_cache_ttl_s=0),
        ) as service,
    ):
        keys = {}
        with service.runtime.session_factory() as session:
            for i in range(args.tenants):
                tenant = create_tenant(session, name=f"tenant-{i}")
                keys[tenant.name] = issue_api_key(session, tenant=tenant).plaintext
            session.commit()
        world = World(service.client, keys)
        end_users = EndUsers(world, service.runtime.session_factory)
        names = sorted(keys)
        for name in names:  # every tenant starts with a few documents, some with access lists
            for path in rng.sample(PATHS, 6):
                world.ingest(name, path, random_principals(rng))
        mutations = 0
        while world.queries < args.queries:
            if world.queries % 250 == 0:
                tenant, path = rng.choice(names), rng.choice(PATHS)
                if rng.random() < 0.3:
                    world.delete(tenant, path)
                else:
                    world.ingest(tenant, path, random_principals(rng))
                world.try_foreign_delete(rng.choice(names), rng.choice(names))
                for name in names:
                    world.check_listing(name)
                end_users.check_stored_turns()
                mutations += 1
            tenant = rng.choice(names)
            if rng.random() < args.answer_share:
                _end_user_question(end_users, tenant, rng)
                continue
            foreign = [d.marker for d in world.documents.values() if d.tenant != tenant]
            query = rng.choice(foreign) if foreign and rng.random() < 0.2 else None
            world.search(tenant, random_principals(rng), query=query)
        end_users.check_stored_turns()
        statistics = probe_every_pair(service.client, keys, rng, args.probe_rounds)
    result = {
        "queries": world.queries,
        "tenants": args.tenants,
        "leaks": len(world.leaks),
        "leak_examples": world.leaks[:10],
        "mutations": mutations,
        "end_users": _end_user_figures(end_users),
        "documents_at_end": len(world.documents),
        "statistics_probes": statistics.probes,
        "statistics_comparisons": statistics.comparisons,
        "score_shifts": len(statistics.shifts),
        "score_shift_examples": statistics.shifts[:10],
        "seconds": round(time.perf_counter() - started, 1),
        "command": "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python bench/isolation.py "
        f"--tenants {args.tenants} --queries {args.queries} --probe-rounds {args.probe_rounds}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| queries | tenants | mutations | leaks | score comparisons | score shifts | seconds |\n"
        "|---|---|---|---|---|---|---|"
    )
    print(
        f"| {result['queries']} | {args.tenants} | {mutations} | {result['leaks']} | "
        f"{statistics.comparisons} | {len(statistics.shifts)} | {result['seconds']} |"
    )
    print("\n| end users | count |\n|---|---|")
    for name, value in _end_user_figures(end_users).items():
        print(f"| {name} | {value} |")
    _plot(result, args.out.with_suffix(".png"))


def probe_every_pair(
    client: Client, keys: dict[str, str], rng: random.Random, rounds: int
) -> ProbeResult:
    """`rounds` statistics probes, each tenant observing in turn while the next one writes."""
    names = sorted(keys)
    result = ProbeResult()
    for n in range(rounds):
        observer, writer = names[n % len(names)], names[(n + 1) % len(names)]
        probe_statistics(client, keys, observer=observer, writer=writer, rng=rng, result=result)
    return result


def _end_user_question(end_users: EndUsers, tenant: str, rng: random.Random) -> None:
    """One end user's request: a new conversation, a follow-up (by its end user, or by another
    one, which must be refused), a streamed one, a chat completion, or a document list and read
    (REST and the MCP read_document tool)."""
    kind = rng.random()
    if kind < 0.1:
        end_users.read(tenant, random_principals(rng), rng)
    elif kind < 0.25:
        end_users.chat(tenant, random_principals(rng), rng)
    else:
        end_users.ask(
            tenant, random_principals(rng), rng,
            follow_up=kind < 0.7, as_owner=kind < 0.55, stream=rng.random() < 0.2,
        )  # fmt: skip


def _end_user_figures(end_users: EndUsers) -> dict[str, int]:
    return {
        "questions": end_users.questions,
        "document_reads": end_users.document_reads,
        "follow_ups_answered": end_users.follow_ups,
        "follow_ups_by_another_end_user_refused": end_users.refused_continuations,
        "conversations": len(end_users.conversations),
        "stored_turn_checks": end_users.turns_checked,
        "readable_markers_echoed": end_users.echoed_markers,
    }


def _plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(
        ["queries checked", "leaks"], [float(str(result["queries"])), float(str(result["leaks"]))]
    )
    ax.set_yscale("symlog")
    ax.set_title(f"isolation: {result['tenants']} tenants, {result['leaks']} leaks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
