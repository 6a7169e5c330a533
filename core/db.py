"""Engine and session factory; the schema itself comes from Alembic migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings


def create_db_engine(settings: Settings) -> Engine:
    """An engine for the configured database (SQLite tuned for threads, or a server pool)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    server = settings.database
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=server.pool_size,
        max_overflow=server.max_overflow,
        pool_timeout=server.pool_timeout_s,
        # A database that does not answer fails the request (503) instead of hanging it.
        connect_args={
            "connect_timeout": server.connect_timeout_s,
            "options": f"-c statement_timeout={server.statement_timeout_ms}",
        },
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while worker threads write; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def run_migrations(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision`, by default the newest (`alembic upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    import migrations

    migrations_dir = Path(migrations.__file__).parent
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url)
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(config, revision)
