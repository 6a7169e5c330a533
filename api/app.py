"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.routers import documents, health, ingest, query
from api.runtime import Runtime
from core.db import run_migrations
from core.settings import Settings

DESCRIPTION = """
ragkb answers questions over a company's documents with citations that map back to document,
page and text span. Every `/v1` call needs `Authorization: Bearer <API key>`; the key alone
decides the tenant, and no call can see another tenant's data.
"""


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; without a runtime, the lifespan migrates the database and builds one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        if owned:
            run_migrations(settings)
            app.state.runtime = Runtime.build(settings)
        else:
            app.state.runtime = runtime
        app.state.runtime.start()
        try:
            yield
        finally:
            if owned:
                app.state.runtime.close()

    app = FastAPI(
        title="ragkb",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(documents.router)
    app.include_router(query.router)
    return app
