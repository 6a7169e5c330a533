"""`ragkb eval answers`: answer quality through the real ingest and query paths.

A fixed random sample of questions from a BEIR-style QA set (queries carry
`metadata.answers`). The gold passages of most questions are ingested, with distractor passages,
into a throw-away tenant through the real upload → Celery → index path; the gold passages of the
rest ("absent" questions) are left out, so the right answer there is "not in the sources". Each
question goes through `POST /v1/query` with streaming (for time to first token).

Metrics:
- `exact_match`: share of present questions whose answer *contains* a gold answer (after
  removing whitespace and punctuation): the reader writes sentences, not spans.
- `f1`: character-level F1 of the answer (markers removed) against the best gold answer.
- `citation_precision`: share of citations that are verified and point at a gold passage.
- `abstain_rate_when_absent`: share of absent questions answered "not in the sources" (by the
  evidence gate or by the reader's own refusal); `no_evidence_when_absent`: by the gate alone;
  `reader_refused_when_absent` / `_when_present`: by the reader (generation/prompt.py).
- `unsupported_when_absent` / `_when_present`: answered "not in the sources" because no citation
  of the reader's answer verified (`CitationSettings.refuse_unsupported`).
- `answerable_kept`: share of present questions the evidence gate let through to the reader;
  `answered_when_present`: share answered at the end (gate, reader and verification).

`run_evidence_eval` (`ragkb eval answers --evidence-only`) measures the gate alone, without a
reader, on any retrieval set (SciFact has no reference answers) plus general-knowledge questions
the corpus cannot answer: the English calibration of `bench/abstention.py`.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from core.db import run_migrations
from core.settings import (
    CitationSettings,
    EmbeddingSettings,
    LimitSettings,
    ReaderSettings,
    Settings,
)
from core.tenancy import create_tenant, issue_api_key
from retrieval.evidence import EvidenceScores, EvidenceThresholds, has_evidence
from retrieval.retriever import RetrievalOptions

_MARKERS = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")


@dataclass(frozen=True)
class QAItem:
    query_id: str
    question: str
    answers: list[str]
    gold_doc_ids: set[str]


def load_qa(
    corpus_dir: Path, *, require_answers: bool = True
) -> tuple[dict[str, str], list[QAItem]]:
    """Passages and the questions with gold passages; `require_answers=False` also keeps
    questions without reference answers (a retrieval set such as SciFact)."""
    passages = {}
    for line in (corpus_dir / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        passages[row["_id"]] = (f"{row.get('title', '')}\n\n" if row.get("title") else "") + row[
            "text"
        ]
    gold: dict[str, set[str]] = {}
    for qrels_file in sorted((corpus_dir / "qrels").glob("*.tsv")):
        for line in qrels_file.read_text().splitlines()[1:]:
            query_id, doc_id, score = line.split("\t")
            if int(score) > 0:
                gold.setdefault(query_id, set()).add(doc_id)
    items = []
    for line in (corpus_dir / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        answers = (row.get("metadata") or {}).get("answers") or []
        if (answers or not require_answers) and row["_id"] in gold:
            items.append(QAItem(row["_id"], row["text"], list(answers), gold[row["_id"]]))
    return passages, items


def normalize(text: str) -> str:
    text = _MARKERS.sub("", text).lower()
    return "".join(
        c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P")
    )


def contains_answer(prediction: str, answers: list[str]) -> bool:
    normalized = normalize(prediction)
    return any(normalize(a) and normalize(a) in normalized for a in answers)


def char_f1(prediction: str, answers: list[str]) -> float:
    best = 0.0
    pred = Counter(normalize(prediction))
    for answer in answers:
        gold = Counter(normalize(answer))
        common = sum((pred & gold).values())
        if common:
            precision, recall = common / sum(pred.values()), common / sum(gold.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


@dataclass(frozen=True)
class QASample:
    """Questions to ask, which of them have their gold passage left out, and what to index."""

    questions: list[QAItem]
    absent: list[QAItem]
    passage_ids: list[str]


def sample_questions(
    passages: dict[str, str],
    items: list[QAItem],
    *,
    sample: int,
    absent_share: float,
    distractors: int,
    rng: random.Random,
) -> QASample:
    chosen = rng.sample(items, min(sample, len(items)))
    absent_count = round(len(chosen) * absent_share)
    absent, present = chosen[:absent_count], chosen[absent_count:]
    excluded = set().union(*(q.gold_doc_ids for q in absent)) if absent else set()
    wanted = set().union(*(q.gold_doc_ids for q in present)) - excluded
    others = sorted(set(passages) - wanted - excluded)
    wanted |= set(rng.sample(others, min(distractors, len(others))))
    return QASample(questions=chosen, absent=absent, passage_ids=sorted(wanted))


@dataclass(frozen=True)
class ThrowawayService:
    client: TestClient
    runtime: Runtime
    tenant_id: str
    headers: dict[str, str]


@contextmanager
def throwaway_service(workdir: Path | None = None, **settings: Any) -> Iterator[ThrowawayService]:
    """The real app in-process with one tenant and its key, in a temporary data folder.

    With `workdir`, the folder is kept and its tenant reused by the next run (an evaluation can
    then index a corpus once and compare configurations many times).
    """
    # An evaluation sends thousands of requests from one tenant: no rate limit may cut it short.
    settings.setdefault(
        "limits",
        LimitSettings(
            queries_per_minute=10**9, query_burst=10**9, ingest_per_minute=10**9, ingest_burst=10**9
        ),
    )
    with tempfile.TemporaryDirectory(prefix="ragkb-throwaway-") as temporary:
        data_dir = workdir or Path(temporary)
        resolved = Settings(data_dir=data_dir, **settings)
        run_migrations(resolved)
        runtime = Runtime.build(resolved)
        identity_file = data_dir / "eval-tenant.json"
        if identity_file.exists():
            identity = json.loads(identity_file.read_text())
        else:
            with runtime.session_factory() as session:
                tenant = create_tenant(session, name=f"throwaway-{int(time.time())}")
                key = issue_api_key(session, tenant=tenant).plaintext
                session.commit()
            identity = {"tenant_id": tenant.id, "key": key}
            if workdir is not None:
                identity_file.write_text(json.dumps(identity))
        try:
            with TestClient(create_app(resolved, runtime)) as client:
                yield ThrowawayService(
                    client,
                    runtime,
                    identity["tenant_id"],
                    {"Authorization": f"Bearer {identity['key']}"},
                )
        finally:
            runtime.close()


def run_answer_eval(
    corpus_dir: Path,
    *,
    sample: int,
    absent_share: float,
    distractors: int,
    top_k: int,
    seed: int,
    embedding_model: str,
    reader_url: str,
    reader_model: str,
    general: list[str] | None = None,
    index_in_process: bool = False,
    refuse_unsupported: bool = False,
    default_guards: bool = False,
) -> dict[str, Any]:
    """The sample through `POST /v1/query` with the reader (metrics: module docstring).

    `general`: questions the corpus cannot answer, asked as absent ones; with them the set
    may have no reference answers (SciFact claims: then only the abstention and citation
    metrics mean anything). `index_in_process`: index as the pipeline does without the upload
    → Celery round trip (`index_passages`), for large English calibration samples.
    `default_guards`: the guards for unverified answers as a deployment has them
    (`CitationSettings` defaults) instead of off, to check `with_default_guard` against them.
    """
    passages, items = load_qa(corpus_dir, require_answers=general is None)
    picked = sample_questions(
        passages, items, sample=sample, absent_share=absent_share, distractors=distractors,
        rng=random.Random(seed),
    )  # fmt: skip
    asked = [(q, q in picked.absent) for q in picked.questions]
    asked += [
        (QAItem(f"general-{i}", text, [], set()), True) for i, text in enumerate(general or [])
    ]
    with throwaway_service(
        embedding=EmbeddingSettings(model=embedding_model),
        reader=ReaderSettings(
            base_url=reader_url, model=reader_model, managed=False, temperature=0
        ),
        # Unless `refuse_unsupported` or `default_guards`, the dense and fused guards are off:
        # every unverified answer is kept, so each guard's policy can be read from the rows
        # (`_summarize`, bench/abstention_guard.py).
        citations=CitationSettings(
            refuse_unsupported=refuse_unsupported,
            unsupported_min_score=None if refuse_unsupported or default_guards else -1.0,
            unsupported_min_fused_score=(
                None if refuse_unsupported or default_guards else float("-inf")
            ),
        ),
    ) as service:
        ingest_started = time.perf_counter()
        index = index_passages if index_in_process else ingest_passages
        index(service, {d: passages[d] for d in picked.passage_ids})
        ingest_s = time.perf_counter() - ingest_started
        rows = [_ask(service.client, service.headers, q, top_k, absent) for q, absent in asked]
    defaults = CitationSettings()
    return _summarize(
        rows, len(picked.passage_ids), ingest_s,
        guard_min_dense=defaults.unsupported_min_score_for(embedding_model),
        guard_min_fused=defaults.unsupported_min_fused_score_for(embedding_model),
    )  # fmt: skip


def ingest_passages(service: ThrowawayService, docs: dict[str, str]) -> None:
    """Upload passages as text files through the real ingest path and wait for the jobs."""
    client, headers = service.client, service.headers
    ids = list(docs)
    for start in range(0, len(ids), 100):
        batch = ids[start : start + 100]
        files = [("files", (f"passages/{d}.txt", docs[d].encode())) for d in batch]
        response = client.post("/v1/ingest/jobs", headers=headers, files=files)
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            job = client.get(f"/v1/ingest/jobs/{job_id}", headers=headers).json()
            if job["status"].startswith("completed"):
                failed = [f for f in job["files"] if f["state"] == "failed"]
                if failed:
                    raise RuntimeError(f"ingest failed: {failed[:3]}")
                break
            time.sleep(0.5)


def index_passages(service: ThrowawayService, docs: dict[str, str]) -> None:
    """Index passages as the ingest pipeline does (parse, chunk, embed, payload, lexical
    context) in this process, without the upload → Celery round trip: a calibration run needs
    several hundred passages per model, and the job path took ~10 s a passage on a loaded
    2-core machine. Same chunks, vectors and payload as `ingest_passages`."""
    from ingest.chunk import chunk_document
    from ingest.parse import parse_document
    from ingest.pipeline import document_version, embedding_text

    chunking = Settings().ingest.chunking
    embedder = service.runtime.embedder
    parsed = {d: parse_document(f"passages/{d}.txt", text.encode()) for d, text in docs.items()}
    chunks = {
        d: chunk_document(
            p,
            max_tokens=chunking.max_tokens,
            overlap_tokens=chunking.overlap_tokens,
            count_tokens=embedder.count_tokens,
        )
        for d, p in parsed.items()
    }
    # One call for every chunk: batches of similar length instead of one small batch a file.
    flat = [embedding_text(c) for d in docs for c in chunks[d]]
    vectors = embedder.embed_passages(flat)
    versions = []
    start = 0
    for doc_id in docs:
        count = len(chunks[doc_id])
        versions.append(
            document_version(
                tenant_id=service.tenant_id, document_id=f"doc-{doc_id}", version="v1",
                path=f"passages/{doc_id}.txt", parsed=parsed[doc_id], chunks=chunks[doc_id],
                vectors=vectors[start : start + count], metadata={}, principals=None,
                lexical_neighbours=chunking.lexical_neighbours,
            )
        )  # fmt: skip
        start += count
    service.runtime.store.replace_documents(versions)


def _ask(
    client: TestClient, headers: dict[str, str], item: QAItem, top_k: int, is_absent: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    response = client.post(
        "/v1/query",
        headers=headers,
        json={"question": item.question, "top_k": top_k, "stream": True},
    )
    events = {}
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events[fields["event"]] = json.loads(fields["data"])
    done = events.get("done")
    if done is None:
        return {"query_id": item.query_id, "absent": is_absent, "error": events.get("error")}
    gold_paths = {f"passages/{d}.txt" for d in item.gold_doc_ids}
    citations = done["citations"]
    return {
        "query_id": item.query_id,
        "absent": is_absent,
        # No answer text in the rows: the data set's licence stays with the data set.
        "answered": done["answered"],
        "no_evidence": "no_evidence" in done["stages"],
        "reader_refused": "reader_refused" in done["stages"],
        "unsupported": "unsupported" in done["stages"],
        "general": item.query_id.startswith("general-"),
        "verified": done["verified"],
        "contains_answer": contains_answer(done["answer"], item.answers),
        "f1": char_f1(done["answer"], item.answers),
        "citations": len(citations),
        "verified_citations": sum(c["verified"] for c in citations),
        "good_citations": sum(c["verified"] and c["path"] in gold_paths for c in citations),
        "gold_retrieved": any(s["path"] in gold_paths for s in done["sources"]),
        "top_score": max((s["score"] for s in done["sources"]), default=None),
        # The signals a guard for unverified answers can weigh (bench/abstention_guard.py).
        "top_dense": max((s["dense_score"] or 0.0 for s in done["sources"]), default=None),
        "top_coverage": max((s["coverage"] or 0.0 for s in done["sources"]), default=None),
        "max_semantic_support": max((c["semantic_support"] for c in citations), default=None),
        "max_lexical_support": max((c["lexical_support"] for c in citations), default=None),
        "ttft_ms": done["timings_ms"].get("ttft_ms"),
        "total_ms": (time.perf_counter() - started) * 1000,
    }


def _summarize(
    rows: list[dict[str, Any]], passages: int, ingest_s: float, *,
    guard_min_dense: float | None = None, guard_min_fused: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The metrics of the module docstring. `guard_min_dense` / `guard_min_fused`: the model's
    default `CitationSettings.unsupported_min_scores` / `unsupported_min_fused_scores`, read as
    a policy over a run with the guards off (the run's searches are hybrid DBSF, unreranked)."""

    def guarded(r: Row) -> bool:
        if r["verified_citations"] > 0:
            return False
        dense, fused = r.get("top_dense"), r.get("top_score")
        return (guard_min_dense is not None and dense is not None and dense < guard_min_dense) or (
            guard_min_fused is not None and fused is not None and fused < guard_min_fused
        )

    ok = [r for r in rows if "error" not in r]
    present = [r for r in ok if not r["absent"]]
    absent = [r for r in ok if r["absent"]]
    cited = sum(r["citations"] for r in present)
    ttfts = [r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None]
    return {
        "questions": len(rows),
        "present_questions": len(present),
        "absent_questions": len(absent),
        "errors": len(rows) - len(ok),
        "passages_indexed": passages,
        "ingest_seconds": round(ingest_s, 1),
        "exact_match": _share(r["contains_answer"] for r in present),
        "f1": round(statistics.fmean(r["f1"] for r in present), 4) if present else 0.0,
        "citation_precision": round(sum(r["good_citations"] for r in present) / cited, 4)
        if cited
        else 0.0,
        "answered_with_citation": _share(r["citations"] > 0 for r in present),
        "verified_answers": _share(r["verified"] for r in present),
        "gold_passage_retrieved": _share(r["gold_retrieved"] for r in present),
        "abstain_rate_when_absent": _share(not r["answered"] for r in absent),
        # The evidence gate alone (no reader called): refusals of absent questions, and
        # answerable questions that kept their evidence.
        "no_evidence_when_absent": _share(r["no_evidence"] for r in absent),
        # The reader's own refusal (after the gate let the question through).
        "reader_refused_when_absent": _share(r.get("reader_refused", False) for r in absent),
        "reader_refused_when_present": _share(r.get("reader_refused", False) for r in present),
        # No citation of the reader's answer verified (CitationSettings.refuse_unsupported).
        "unsupported_when_absent": _share(r.get("unsupported", False) for r in absent),
        "unsupported_when_present": _share(r.get("unsupported", False) for r in present),
        "answered_when_present": _share(r["answered"] for r in present),
        "abstain_rate_general": _share(not r["answered"] for r in absent if r.get("general")),
        "answerable_kept": _share(not r["no_evidence"] for r in present),
        # From a run with the guard off: what each policy for answers no citation verifies
        # would have given (refused = not answered by the run, or refused by the policy).
        "if_unsupported_refused": _policy(present, absent, lambda r: r["verified_citations"] == 0),
        "if_cited_unsupported_refused": _policy(
            present, absent, lambda r: r["citations"] > 0 and r["verified_citations"] == 0
        ),
        # The default guard (CitationSettings.unsupported_min_scores and _fused_scores): an
        # unverified answer whose best source is below the model's threshold.
        "with_default_guard": {
            "min_dense": guard_min_dense,
            "min_fused": guard_min_fused,
            **_policy(present, absent, guarded),
        },
        "ttft_p50_ms": round(statistics.median(ttfts), 1) if ttfts else None,
        "total_p50_ms": round(statistics.median(r["total_ms"] for r in ok), 1) if ok else None,
        "rows": rows,
    }


Row = dict[str, Any]


def _policy(
    present: list[Row], absent: list[Row], refuses: Callable[[Row], bool]
) -> dict[str, float]:
    """Present questions still answered and absent ones refused, had answered rows that
    `refuses` picks been answered "not in the sources"."""

    def answered(r: Row) -> bool:
        return bool(r["answered"]) and not refuses(r)

    return {
        "answered_when_present": _share(answered(r) for r in present),
        "refused_when_absent": _share(not answered(r) for r in absent),
    }


def evidence_rows(
    corpus_dir: Path, embedding_model: str, *, sample: int, absent_share: float,
    distractors: int, top_k: int, seed: int, general: list[str] | None = None,
) -> list[Row]:  # fmt: skip
    """Each question's retrieved chunks with the evidence gate's two signals (dense cosine,
    term coverage: retrieval/evidence.py) and whether each is a gold passage; no reader.

    The sample is drawn as `run_answer_eval` draws it; `general` questions (ones the corpus
    cannot answer) are added as absent ones to an English corpus.
    """
    passages, items = load_qa(corpus_dir, require_answers=False)
    picked = sample_questions(
        passages, items, sample=sample, absent_share=absent_share, distractors=distractors,
        rng=random.Random(seed),
    )  # fmt: skip
    asked = [(q.query_id, q.question, q in picked.absent, q.gold_doc_ids) for q in picked.questions]
    chinese = any("\u4e00" <= ch <= "\u9fff" for q in picked.questions for ch in q.question)
    if general and not chinese:
        asked += [(f"general-{i}", text, True, set()) for i, text in enumerate(general)]
    rows: list[Row] = []
    with throwaway_service(
        embedding=EmbeddingSettings(model=embedding_model), reader=ReaderSettings(managed=False)
    ) as service:
        index_passages(service, {d: passages[d] for d in picked.passage_ids})
        retriever = service.runtime.retriever
        for query_id, text, absent, gold in asked:
            found = retriever.retrieve(
                tenant_id=service.tenant_id, query=text, top_k=top_k,
                options=RetrievalOptions(evidence_gate=False),
            )  # fmt: skip
            chunks = retriever.with_coverage(service.tenant_id, text, found.chunks)
            chunks = retriever.with_sentence_signals(service.tenant_id, text, chunks)
            gold_paths = {f"passages/{d}.txt" for d in gold}
            rows.append(
                {
                    "corpus": corpus_dir.name,
                    "query_id": query_id,
                    "absent": absent,
                    "general": query_id.startswith("general-"),
                    "chunks": [
                        [
                            round(c.dense_score or 0.0, 4),
                            round(c.coverage or 0.0, 4),
                            c.path in gold_paths,
                            round(c.retrieval_score, 4),
                            round(c.sentence_score or 0.0, 4),
                            round(c.sentence_coverage or 0.0, 4),
                        ]
                        for c in chunks
                    ],
                }
            )
    return rows


def chunk_scores(chunk: list[Any]) -> EvidenceScores:
    """A row's chunk as the gate reads it: (dense, coverage, best sentence's cosine); rows
    recorded before sentence signals have no sentence score (it counts as clearing)."""
    return (chunk[0], chunk[1], chunk[4] if len(chunk) > 4 else None)


def evidence_rates(rows: list[Row], thresholds: EvidenceThresholds) -> dict[str, float | int]:
    """The gate's outcome on `evidence_rows`: answerable questions that keep evidence (and
    their gold passage), absent and general questions refused."""

    def found(row: Row) -> bool:
        return has_evidence([chunk_scores(chunk) for chunk in row["chunks"]], thresholds)

    present = [r for r in rows if not r["absent"]]
    absent = [r for r in rows if r["absent"]]
    kept = [found(r) for r in present]
    gold_kept = [
        k and any(d >= thresholds.min_dense and gold for d, _, gold, *_ in r["chunks"])
        for r, k in zip(present, kept, strict=True)
    ]
    return {
        "answerable": len(present),
        "absent": len(absent),
        "answerable_kept": _share(kept),
        "answerable_gold_kept": _share(gold_kept),
        "absent_abstained": _share(not found(r) for r in absent),
        # Absent because their gold passage was left out (the corpus's own field is indexed).
        "left_out_abstained": _share(not found(r) for r in absent if not r["general"]),
        "general_abstained": _share(not found(r) for r in absent if r["general"]),
    }


def run_evidence_eval(
    corpus_dir: Path, *, sample: int, absent_share: float, distractors: int, top_k: int,
    seed: int, embedding_model: str, general: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The configured evidence gate of `embedding_model` on a sample (no reader): answerable
    questions kept and absent (and general-knowledge) questions refused, with the rows."""
    retrieval = Settings().retrieval
    thresholds = EvidenceThresholds(
        min_dense=retrieval.min_score_for(embedding_model),
        min_coverage=retrieval.min_coverage_for(embedding_model),
        min_sentence=retrieval.min_sentence_for(embedding_model),
    )
    rows = evidence_rows(
        corpus_dir, embedding_model, sample=sample, absent_share=absent_share,
        distractors=distractors, top_k=top_k, seed=seed, general=general,
    )  # fmt: skip
    return {
        "embedding_model": embedding_model,
        "min_dense": thresholds.min_dense,
        "min_coverage": thresholds.min_coverage,
        "min_sentence": thresholds.min_sentence,
        **evidence_rates(rows, thresholds),
        "rows": rows,
    }


def _share(flags: Any) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else 0.0
