"""`ragkb check`: what is configured, and does each dependency answer."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.settings import EmbeddingProvider, Settings, VectorStoreKind

CheckRow = tuple[str, bool, str]


def run_checks(settings: Settings) -> list[CheckRow]:
    rows: list[CheckRow] = [("environment", True, settings.environment)]
    rows.append(_run("database", _check_database, settings))
    rows.append(_run("broker", _check_broker, settings))
    rows.append(_run("vector store", _check_vector_store, settings))
    rows.append(_run("collection parameters", _check_collections, settings))
    rows.append(_run("reader", _check_reader, settings))
    rows.append(_run("embedding", _check_embedding, settings))
    return rows


def service_checks(settings: Settings) -> list[CheckRow]:
    """The dependencies a running service talks to besides its database and store: the broker
    and the reader (each with a few seconds' timeout)."""
    return [_run("broker", _check_broker, settings), _run("reader", _check_reader, settings)]


def _run(name: str, check: Callable[[Settings], str], settings: Settings) -> CheckRow:
    try:
        return (name, True, check(settings))
    except Exception as exc:
        return (name, False, f"{type(exc).__name__}: {exc}"[:800])


def _check_database(settings: Settings) -> str:
    from core.db import create_db_engine

    url = make_url(settings.resolved_database_url)
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=True)


def _check_broker(settings: Settings) -> str:
    from kombu.connection import Connection

    from workers.celery_app import broker_options, broker_transport

    url, options = broker_options(settings)
    connection = Connection(  # type: ignore[no-untyped-call]
        url,
        transport=broker_transport(settings),
        transport_options=options,
        connect_timeout=3,
    )
    with connection:
        connection.ensure_connection(max_retries=1)  # type: ignore[no-untyped-call]
    return make_url(url).render_as_string(hide_password=True) if "://" in url else url


def _check_vector_store(settings: Settings) -> str:
    if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
        # Opening it here would take the folder lock from a running `ragkb serve`.
        path = settings.vector_store_path
        return f"embedded at {path} ({'exists' if path.exists() else 'created on first start'})"
    if not settings.vector_store.url:
        return f"qdrant-client local mode at {settings.vector_store_path}"
    headers = {}
    if settings.vector_store.api_key is not None:
        headers["api-key"] = settings.vector_store.api_key.get_secret_value()
    response = httpx.get(f"{settings.vector_store.url}/collections", headers=headers, timeout=5)
    response.raise_for_status()
    # The root answers {"title": ..., "version": ...}; an older server cannot keep lexical
    # statistics per tenant and `ragkb serve` would refuse it.
    from core.vectorstore.qdrant_server import require_per_tenant_idf

    version = str(
        httpx.get(settings.vector_store.url, headers=headers, timeout=5).json()["version"]
    )
    require_per_tenant_idf(version)
    return f"qdrant server {version} at {settings.vector_store.url}"


def _check_collections(settings: Settings) -> str:
    """Each existing collection against `vector_store.collection`; a difference fails the row.

    Parameters apply when a collection is created, so a setting changed afterwards would
    otherwise be silently ignored."""
    from core.vectorstore.layout import desired_layout, drift, edge_layout

    layout = settings.vector_store.collection
    prefix = settings.vector_store.collection_prefix + "__"
    found: dict[str, dict[str, object]] = {}
    if settings.vector_store.kind is VectorStoreKind.EMBEDDED:
        root = settings.vector_store_path
        for folder in sorted(root.glob(prefix + "*")) if root.exists() else []:
            stored = edge_layout(folder)
            if stored is not None:
                found[folder.name] = stored
        desired = desired_layout(layout, server=False)
    elif not settings.vector_store.url:
        return "qdrant-client local mode keeps no collection parameters (server only)"
    else:
        from qdrant_client import QdrantClient

        from core.vectorstore.qdrant_server import server_layout

        api_key = settings.vector_store.api_key
        client = QdrantClient(
            url=settings.vector_store.url,
            api_key=api_key.get_secret_value() if api_key else None,
            timeout=5,
        )
        try:
            for collection in client.get_collections().collections:
                if collection.name.startswith(prefix):
                    found[collection.name] = server_layout(client.get_collection(collection.name))
        finally:
            client.close()
        desired = desired_layout(layout, server=True)
    problems = [
        f"{name}: {line}" for name, stored in found.items() for line in drift(desired, stored)
    ]
    if problems:
        raise RuntimeError(
            "; ".join(problems) + " (RAGKB_VECTOR_STORE__COLLECTION__* apply only when a "
            "collection is created: set them back, or `ragkb reindex` to a new collection)"
        )
    return f"{len(found)} collection(s) as configured" if found else "no collection yet"


def _check_reader(settings: Settings) -> str:
    headers = {"Authorization": f"Bearer {settings.reader.api_key.get_secret_value()}"}
    response = httpx.get(f"{settings.reader.base_url}/models", headers=headers, timeout=5)
    response.raise_for_status()
    served = [m["id"] for m in response.json().get("data", [])]
    if settings.reader.model not in served:
        raise RuntimeError(f"model {settings.reader.model!r} not served (served: {served})")
    return f"{settings.reader.model} at {settings.reader.base_url}"


def _check_embedding(settings: Settings) -> str:
    embedding = settings.embedding
    if embedding.provider is EmbeddingProvider.LOCAL:
        return f"{embedding.model} in-process"
    from core.embedding_service import ServedEmbedder

    # One request, no retries: a probe of the vector length, as each process does at start.
    served = ServedEmbedder(embedding.model_copy(update={"max_retries": 0, "timeout_s": 10}))
    served.warm_up()
    vector = served.embed_query("ragkb check")
    return f"{embedding.model} at {embedding.base_url} ({len(vector)} dimensions)"
