"""One conformance suite for every VectorStore implementation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.lexical import LexicalEncoder
from core.settings import FusionMethod, LexicalSettings
from core.vectorstore import (
    ChunkPoint,
    DocumentVersion,
    HybridQuery,
    SearchFilter,
    SearchHit,
    VectorStore,
    with_lexical_context,
)
from core.vectorstore.edge import EdgeVectorStore
from core.vectorstore.qdrant_server import QdrantServerVectorStore, require_per_tenant_idf
from ingest.identity import point_id_for

DIM = 4
LEXICAL = LexicalEncoder(LexicalSettings())


@pytest.fixture(params=["edge", "qdrant-client-local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    built: VectorStore
    if request.param == "edge":
        built = EdgeVectorStore(path=tmp_path / "edge", dimension=DIM, lexical=LEXICAL)
    else:
        built = QdrantServerVectorStore(
            collection="chunks", dimension=DIM, lexical=LEXICAL, path=tmp_path / "local"
        )
    built.ensure_collection()
    yield built
    built.close()


def point(
    tenant: str,
    doc: str,
    version: str,
    index: int,
    vector: list[float],
    *,
    text: str | None = None,
    **payload: object,
) -> ChunkPoint:
    return ChunkPoint(
        point_id=point_id_for(tenant, doc, version, index),
        tenant_id=tenant,
        document_id=doc,
        version=version,
        dense_vector=vector,
        payload={
            "text": text or f"{tenant}/{doc}/{version}/{index}",
            "chunk_index": index,
            **payload,
        },
    )


def dense(store: VectorStore, tenant: str, vector: list[float], limit: int = 10) -> list[SearchHit]:
    return store.search(tenant_id=tenant, query=HybridQuery(limit=limit, dense=vector))


def texts(hits: list[SearchHit]) -> list[str]:
    return [str(h.payload["text"]) for h in hits]


def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    store.ensure_collection()
    store.ensure_collection()
    assert store.count(tenant_id="t1") == 0


def test_search_sees_only_the_callers_tenant(store: VectorStore) -> None:
    store.upsert(
        [
            point("t1", "d1", "v1", 0, [1, 0, 0, 0]),
            point("t1", "d1", "v1", 1, [0, 1, 0, 0]),
            point("t2", "d9", "v1", 0, [1, 0, 0, 0]),
        ]
    )
    hits = dense(store, "t1", [1, 0, 0, 0])
    assert texts(hits) == ["t1/d1/v1/0", "t1/d1/v1/1"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].dense_score == pytest.approx(1.0, abs=1e-5)
    assert all(h.payload["tenant_id"] == "t1" for h in hits)
    assert texts(dense(store, "t2", [0, 1, 0, 0])) == ["t2/d9/v1/0"]
    assert dense(store, "nobody", [1, 0, 0, 0]) == []


def test_upsert_with_the_same_ids_does_not_duplicate(store: VectorStore) -> None:
    batch = [point("t1", "d1", "v1", i, [1, i, 0, 0]) for i in range(3)]
    store.upsert(batch)
    store.upsert(batch)
    assert store.count(tenant_id="t1") == 3


def test_delete_document_keeps_other_documents_tenants_and_the_kept_version(
    store: VectorStore,
) -> None:
    store.upsert(
        [
            point("t1", "d1", "old", 0, [1, 0, 0, 0]),
            point("t1", "d1", "old", 1, [1, 1, 0, 0]),
            point("t1", "d1", "new", 0, [1, 0, 1, 0]),
            point("t1", "d2", "v1", 0, [0, 0, 0, 1]),
            point("t2", "d1", "old", 0, [1, 0, 0, 0]),
        ]
    )
    store.delete_document(tenant_id="t1", document_id="d1", keep_version="new")
    assert store.count(tenant_id="t1", document_id="d1") == 1
    assert store.count(tenant_id="t1", document_id="d2") == 1
    assert store.count(tenant_id="t2") == 1
    store.delete_document(tenant_id="t1", document_id="d1")
    assert store.count(tenant_id="t1", document_id="d1") == 0
    assert store.count(tenant_id="t2", document_id="d1") == 1


def test_replace_documents_swaps_each_documents_version_in_one_call(
    store: VectorStore,
) -> None:
    store.upsert(
        [
            point("t1", "d1", "old", 0, [1, 0, 0, 0]),
            point("t1", "d1", "old", 1, [1, 1, 0, 0]),
            point("t1", "d2", "old", 0, [0, 1, 0, 0]),
            point("t1", "d3", "v1", 0, [0, 0, 1, 0]),
            point("t2", "d1", "old", 0, [1, 0, 0, 0]),
        ]
    )
    store.replace_documents(
        [
            DocumentVersion("t1", "d1", "new", [point("t1", "d1", "new", 0, [1, 0, 1, 0])]),
            # A document whose new version has no chunks (an emptied file) loses its points.
            DocumentVersion("t1", "d2", "new", []),
            DocumentVersion("t2", "d7", "v1", [point("t2", "d7", "v1", 0, [0, 0, 0, 1])]),
        ]
    )
    assert texts(dense(store, "t1", [1, 0, 1, 0], limit=1)) == ["t1/d1/new/0"]
    assert store.document_counts(tenant_id="t1") == {"d1": 1, "d3": 1}
    # Another tenant's document of the same id is not touched.
    assert store.document_counts(tenant_id="t2") == {"d1": 1, "d7": 1}
    store.replace_documents([])


def test_replace_documents_refuses_two_versions_of_one_document(store: VectorStore) -> None:
    """Each version's cleanup would delete the other's points: the document would be left with
    none (issue 15: the same path twice in one upload)."""
    store.upsert([point("t1", "d1", "v0", 0, [1, 0, 0, 0])])
    both = [
        DocumentVersion("t1", "d1", "v1", [point("t1", "d1", "v1", 0, [0, 1, 0, 0])]),
        DocumentVersion("t1", "d1", "v2", [point("t1", "d1", "v2", 0, [0, 0, 1, 0])]),
    ]
    with pytest.raises(ValueError, match="twice"):
        store.replace_documents(both)
    assert store.count(tenant_id="t1", document_id="d1", version="v0") == 1
    # The same document id in two tenants is two documents.
    store.replace_documents(
        [
            DocumentVersion("t1", "d1", "v1", [point("t1", "d1", "v1", 0, [0, 1, 0, 0])]),
            DocumentVersion("t2", "d1", "v2", [point("t2", "d1", "v2", 0, [0, 0, 1, 0])]),
        ]
    )
    assert store.count(tenant_id="t1", document_id="d1") == 1
    assert store.count(tenant_id="t1", document_id="d1", version="v1") == 1
    assert store.count(tenant_id="t1", document_id="d1", version="v0") == 0
    assert store.count(tenant_id="t2", document_id="d1", version="v2") == 1


def test_a_tenant_is_required(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="tenant"):
        dense(store, "", [1, 0, 0, 0])
    with pytest.raises(ValueError, match="tenant"):
        store.delete_document(tenant_id="", document_id="d1")


def test_data_survives_reopening(tmp_path: Path) -> None:
    first = EdgeVectorStore(path=tmp_path / "edge", dimension=DIM, lexical=LEXICAL)
    first.upsert([point("t1", "d1", "v1", 0, [1, 0, 0, 0])])
    first.close()
    second = EdgeVectorStore(path=tmp_path / "edge", dimension=DIM, lexical=LEXICAL)
    assert second.count(tenant_id="t1") == 1
    second.close()


CORPUS = {
    "d1": "Quarterly revenue grew in the third quarter.",
    "d2": "The security policy requires rotating passwords.",
    "d3": "员工每年享有二十天带薪年假。",
}


def lexical_corpus(store: VectorStore) -> None:
    store.upsert(
        [
            point("t1", "d1", "v1", 0, [1, 0, 0, 0], text=CORPUS["d1"], path="reports/2024/q3.pdf"),
            point("t1", "d2", "v1", 0, [0, 1, 0, 0], text=CORPUS["d2"], path="policies/sec.md"),
            point("t1", "d3", "v1", 0, [0, 0, 1, 0], text=CORPUS["d3"], path="hr/leave.docx"),
            # Another tenant holds the same words: it must never be found by t1.
            point("t2", "d1", "v1", 0, [0, 1, 0, 0], text=CORPUS["d2"], path="policies/sec.md"),
        ]
    )


def test_lexical_search_matches_stemmed_english_and_chinese_bigrams(store: VectorStore) -> None:
    lexical_corpus(store)

    def lexical(query: str) -> list[str]:
        hits = store.search(
            tenant_id="t1", query=HybridQuery(limit=5, sparse=LEXICAL.encode_query(query))
        )
        return [str(h.payload["document_id"]) for h in hits]

    assert lexical("password rotation") == ["d2"]
    assert lexical("revenues growing") == ["d1"]
    assert lexical("带薪年假有多少天") == ["d3"]
    assert lexical("the of and") == []


@pytest.mark.parametrize("fusion", list(FusionMethod))
def test_hybrid_query_fuses_both_rankings_within_the_tenant(
    store: VectorStore, fusion: FusionMethod
) -> None:
    lexical_corpus(store)
    hits = store.search(
        tenant_id="t1",
        query=HybridQuery(
            limit=3,
            # The dense side prefers d1, the lexical side d2: both must come back, fused.
            dense=[1, 0, 0, 0],
            sparse=LEXICAL.encode_query("security policy passwords"),
            fusion=fusion,
        ),
    )
    ids = [h.payload["document_id"] for h in hits]
    assert set(ids[:2]) == {"d1", "d2"}
    assert all(h.payload["tenant_id"] == "t1" for h in hits)
    by_id = {h.payload["document_id"]: h for h in hits}
    assert by_id["d1"].dense_score == pytest.approx(1.0, abs=1e-5)
    assert by_id["d2"].dense_score == pytest.approx(0.0, abs=1e-5)


def test_rrf_weights_decide_which_ranking_leads(store: VectorStore) -> None:
    lexical_corpus(store)

    def first(dense_weight: float, sparse_weight: float) -> object:
        hits = store.search(
            tenant_id="t1",
            query=HybridQuery(
                limit=1,
                dense=[1, 0, 0, 0],
                sparse=LEXICAL.encode_query("security policy passwords"),
                # Each ranking contributes only its own best: d1 (dense) and d2 (lexical).
                candidates=1,
                dense_weight=dense_weight,
                sparse_weight=sparse_weight,
            ),
        )
        return hits[0].payload["document_id"]

    assert first(3.0, 1.0) == "d1"
    assert first(1.0, 3.0) == "d2"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (SearchFilter(document_ids=("d1", "d3")), {"d1", "d3"}),
        (SearchFilter(path_prefix="reports/"), {"d1"}),
        (SearchFilter(path_prefix="reports/2024/"), {"d1"}),
        (SearchFilter(path_prefix="report/"), set()),
        (SearchFilter(file_types=("md", "docx")), {"d2", "d3"}),
        (SearchFilter(metadata={"team": "finance"}), {"d1"}),
        (SearchFilter(principals=("group:hr",)), {"d2", "d3"}),
        (SearchFilter(principals=()), {"d2"}),
        (SearchFilter(principals=("group:hr",), file_types=("md",)), {"d2"}),
    ],
)
def test_filters_narrow_search_inside_the_store(
    store: VectorStore, filters: SearchFilter, expected: set[str]
) -> None:
    store.upsert(
        [
            point(
                "t1", "d1", "v1", 0, [1, 0, 0, 0], path="reports/2024/q3.pdf",
                meta={"team": "finance"}, principals=["group:finance"],
            ),
            point("t1", "d2", "v1", 0, [0.9, 0.1, 0, 0], path="policies/sec.md"),
            point(
                "t1", "d3", "v1", 0, [0.8, 0, 0.2, 0], path="hr/leave.docx",
                meta={"team": "hr"}, principals=["group:hr", "user:ann"],
            ),
            point("t2", "d1", "v1", 0, [1, 0, 0, 0], path="reports/2024/q3.pdf"),
        ]
    )  # fmt: skip
    hits = store.search(
        tenant_id="t1", query=HybridQuery(limit=10, dense=[1, 0, 0, 0]), filters=filters
    )
    assert {h.payload["document_id"] for h in hits} == expected
    assert all(h.payload["tenant_id"] == "t1" for h in hits)


def test_filters_on_indexing_time(store: VectorStore) -> None:
    from datetime import UTC, datetime, timedelta

    store.upsert(
        [
            point("t1", "old", "v1", 0, [1, 0, 0, 0], indexed_at="2024-01-01T00:00:00+00:00"),
            point("t1", "new", "v1", 0, [1, 0, 0, 0]),
        ]
    )
    now = datetime.now(UTC)
    recent = SearchFilter(indexed_after=now - timedelta(days=1))
    before = SearchFilter(indexed_before=datetime(2025, 1, 1, tzinfo=UTC))
    query = HybridQuery(limit=10, dense=[1, 0, 0, 0])
    assert [
        h.payload["document_id"] for h in store.search(tenant_id="t1", query=query, filters=recent)
    ] == ["new"]
    assert [
        h.payload["document_id"] for h in store.search(tenant_id="t1", query=query, filters=before)
    ] == ["old"]


def test_document_counts_per_tenant(store: VectorStore) -> None:
    store.upsert(
        [
            point("t1", "d1", "v1", 0, [1, 0, 0, 0]),
            point("t1", "d1", "v1", 1, [1, 0, 0, 0]),
            point("t1", "d2", "v1", 0, [1, 0, 0, 0]),
            point("t2", "d3", "v1", 0, [1, 0, 0, 0]),
        ]
    )
    assert store.document_counts(tenant_id="t1") == {"d1": 2, "d2": 1}
    assert store.document_counts(tenant_id="t2") == {"d3": 1}
    assert store.document_counts(tenant_id="t3") == {}


def test_idf_counts_only_the_tenants_points_the_caller_may_read(store: VectorStore) -> None:
    texts = ["cells divide", "cells die", "cells grow by apoptosis", "dogs bark"]
    store.upsert([point("t1", f"d{i}", "v1", 0, [1, 0, 0, 0], text=t) for i, t in enumerate(texts)])
    store.upsert(
        [point("t1", "d8", "v1", 0, [1, 0, 0, 0], text="cells and apoptosis",
               principals=["group:finance"])]
    )  # fmt: skip
    # Another tenant's points count for nothing, even holding the same words.
    store.upsert(
        [
            point("t2", f"o{i}", "v1", 0, [1, 0, 0, 0], text="cells zebrafish zebrafish")
            for i in range(40)
        ]
    )
    query = LEXICAL.encode_query("cells apoptosis zebrafish unicorn")

    def index(word: str) -> int:
        return LEXICAL.encode_query(word).indices[0]

    # BM25's IDF as Qdrant computes it, over the tenant's points the caller may read.
    def expected(df: int, n: int) -> float:
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    tenant = store.idf(tenant_id="t1", terms=query)
    assert set(tenant) == {index("cells"), index("apoptosis")}
    assert tenant[index("cells")] == pytest.approx(expected(4, 5), rel=1e-4)
    assert tenant[index("apoptosis")] == pytest.approx(expected(2, 5), rel=1e-4)
    # An end user who may not read the finance document: its words count neither.
    ann = store.idf(tenant_id="t1", terms=query, principals=("user:ann",))
    assert ann[index("cells")] == pytest.approx(expected(3, 4), rel=1e-4)
    assert ann[index("apoptosis")] == pytest.approx(expected(1, 4), rel=1e-4)
    finance = store.idf(tenant_id="t1", terms=query, principals=("group:finance",))
    assert finance == pytest.approx(tenant)
    assert store.idf(tenant_id="t1", terms=LEXICAL.encode_query("the of")) == {}


@pytest.mark.parametrize("with_dense", [False, True], ids=["lexical", "hybrid"])
def test_scores_do_not_move_when_another_tenant_or_a_hidden_document_changes(
    store: VectorStore, with_dense: bool
) -> None:
    texts = ["orion launch plan", "spring budget", "orion budget notes", "team offsite"]
    store.upsert([point("t1", f"d{i}", "v1", 0, [1, i, 0, 0], text=t) for i, t in enumerate(texts)])
    query = HybridQuery(
        limit=10,
        sparse=LEXICAL.encode_query("orion budget"),
        dense=[1.0, 0.5, 0.0, 0.0] if with_dense else None,
        fusion=FusionMethod.DBSF,
    )

    def scores(principals: tuple[str, ...] | None = None) -> list[tuple[str, float]]:
        hits = store.search(
            tenant_id="t1", query=query, filters=SearchFilter(principals=principals)
        )
        return [(h.point_id, h.score) for h in hits]

    tenant, ann = scores(), scores(("user:ann",))
    assert len(tenant) == (4 if with_dense else 3)
    # 40 documents of another tenant holding the terms, restricted to a group, then gone.
    store.upsert(
        [
            point("t2", f"o{i}", "v1", 0, [1, 0, 0, 0], text="orion orion budget",
                  principals=["group:finance"])
            for i in range(40)
        ]
    )  # fmt: skip
    assert (scores(), scores(("user:ann",))) == (tenant, ann)
    for i in range(40):
        store.delete_document(tenant_id="t2", document_id=f"o{i}")
    assert (scores(), scores(("user:ann",))) == (tenant, ann)
    # A document of the same tenant that ann may not read leaves ann's scores as they were.
    store.upsert(
        [point("t1", "d9", "v1", 0, [0, 0, 1, 0], text="orion orion", principals=["group:hr"])]
    )
    assert scores(("user:ann",)) == ann
    assert scores() != tenant  # the tenant itself (no end user) reads it: its statistics move


def test_lexical_context_lets_a_chunk_match_its_neighbours_words(store: VectorStore) -> None:
    # One document in three chunks; only the first names the topic.
    chunks = ["Aspirin was studied.", "It lowered the risk.", "Patients were followed up."]
    starts = [0, 21, 42]
    points = [
        point("t1", "d1", "v1", i, [1, 0, 0, 0], text=t, char_start=s, char_end=s + len(t))
        for i, (t, s) in enumerate(zip(chunks, starts, strict=True))
    ]
    store.upsert(with_lexical_context(points, neighbours=1))
    hits = store.search(
        tenant_id="t1", query=HybridQuery(limit=5, sparse=LEXICAL.encode_query("aspirin"))
    )
    # The second chunk (a neighbour of the first) matches, the third does not; the stored
    # text, and so the cited span, stays each chunk's own.
    assert sorted(texts(hits)) == sorted(chunks[:2])


def test_lexical_context_joins_overlapping_chunks_once() -> None:
    document = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    spans = [(0, 29), (15, 47), (30, 66)]  # each chunk repeats the previous one's last sentence
    points = [
        point("t1", "d1", "v1", i, [1, 0, 0, 0], text=document[a:b], char_start=a, char_end=b)
        for i, (a, b) in enumerate(spans)
    ]
    shuffled = [points[2], points[0], points[1]]
    context = {p.point_id: p.lexical_context for p in with_lexical_context(shuffled, 1)}
    assert context[points[0].point_id] == document[0:47]
    assert context[points[1].point_id] == document[0:66]
    assert context[points[2].point_id] == document[15:66]
    assert with_lexical_context(points, 0) == points
    assert "Ten" in with_lexical_context(points, 1)[2].lexical_text()


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("1.19.1", True), ("1.19.0-dev", True), ("1.20", True), ("2.0.0", True),
     ("1.18.2", False), ("1.9.5", False), ("unknown", False)],
)  # fmt: skip
def test_a_qdrant_too_old_to_count_idf_per_tenant_is_refused(version: str, accepted: bool) -> None:
    if accepted:
        require_per_tenant_idf(version)
    else:
        with pytest.raises(RuntimeError, match="Qdrant"):
            require_per_tenant_idf(version)
