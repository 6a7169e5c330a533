from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.db import create_db_engine, create_session_factory, run_migrations
from core.keycache import KeyCache
from core.models import ApiKey, utcnow
from core.settings import Settings
from core.tenancy import (
    DEFAULT_SCOPES,
    Scope,
    TenantContext,
    TenantExistsError,
    create_tenant,
    get_tenant_by_name,
    issue_api_key,
    parse_scopes,
    resolve_api_key,
)


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    run_migrations(settings)
    engine = create_db_engine(settings)
    with create_session_factory(engine)() as s:
        yield s
    engine.dispose()


def test_key_resolves_to_its_tenant_and_is_stored_hashed(session: Session) -> None:
    acme = create_tenant(session, name="acme")
    issued = issue_api_key(session, tenant=acme)
    session.commit()
    context = resolve_api_key(session, presented_key=issued.plaintext)
    assert context is not None
    assert context.tenant_id == acme.id
    assert context.tenant_name == "acme"
    row = session.scalars(select(ApiKey)).one()
    secret = issued.plaintext.rsplit("_", 1)[1]
    assert secret not in row.secret_hash
    assert issued.plaintext not in row.secret_hash


@pytest.mark.parametrize(
    "presented", ["", "garbage", "rkb_", "rkb_abc_def", "Bearer x", "rkb_{prefix}_wrongsecret"]
)
def test_unknown_or_malformed_keys_resolve_to_nothing(session: Session, presented: str) -> None:
    acme = create_tenant(session, name="acme")
    issued = issue_api_key(session, tenant=acme)
    session.commit()
    prefix = issued.plaintext.split("_")[1]
    assert resolve_api_key(session, presented_key=presented.format(prefix=prefix)) is None


def test_revoked_key_is_refused(session: Session) -> None:
    issued = issue_api_key(session, tenant=create_tenant(session, name="acme"))
    session.scalars(select(ApiKey)).one().revoked_at = utcnow()
    session.commit()
    assert resolve_api_key(session, presented_key=issued.plaintext) is None


def test_tenant_names_are_unique(session: Session) -> None:
    create_tenant(session, name="acme")
    session.commit()
    with pytest.raises(TenantExistsError):
        create_tenant(session, name="acme")
    assert get_tenant_by_name(session, name="acme").name == "acme"


def test_migrations_match_the_models(settings: Settings) -> None:
    """The Alembic head describes exactly the SQLAlchemy models (nothing left to autogenerate)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.models import Base

    run_migrations(settings)
    engine = create_db_engine(settings)
    # SQLite's stand-in for PostgreSQL's write sequence (ingest/versions.py) is a counter table
    # that only SQL reaches, never a model.
    options = {
        "include_name": lambda name, kind, _: not (kind == "table" and name == "write_sequence")
    }
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=options)
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_keys_made_before_scopes_keep_ingest_query_read(settings: Settings) -> None:
    """Migration 0003 gives existing keys the default scopes, and never `admin`."""
    from alembic import command
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(config, "0002_conversations")
    engine = create_db_engine(settings)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'old', :now)"),
            {"now": utcnow()},
        )
        connection.execute(
            text(
                "INSERT INTO api_keys (id, tenant_id, name, lookup_prefix, secret_hash, created_at)"
                " VALUES ('k1', 't1', 'old', 'abc', :hash, :now)"
            ),
            {"hash": hashlib.sha256(b"secret").hexdigest(), "now": utcnow()},
        )
    engine.dispose()
    run_migrations(settings)
    engine = create_db_engine(settings)
    with create_session_factory(engine)() as session:
        context = resolve_api_key(session, presented_key="rkb_abc_secret")
    engine.dispose()
    assert context is not None
    assert context.scopes == DEFAULT_SCOPES == {Scope.INGEST, Scope.QUERY, Scope.READ}


def test_expired_keys_and_unknown_scopes_are_refused(session: Session) -> None:
    acme = create_tenant(session, name="acme")
    with pytest.raises(ValueError, match="future"):
        issue_api_key(session, tenant=acme, expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes(["query", "root"])
    assert parse_scopes(["query,read", "admin"]) == {Scope.QUERY, Scope.READ, Scope.ADMIN}


class _Clock:
    """A clock the test moves by hand (the cache's TTL is measured on it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _caller(tenant_id: str, *, expires_in_s: float | None = None) -> TenantContext:
    expires_at = utcnow() + timedelta(seconds=expires_in_s) if expires_in_s is not None else None
    return TenantContext(
        tenant_id=tenant_id, tenant_name=tenant_id, api_key_id=f"key-{tenant_id}",
        key_expires_at=expires_at,
    )  # fmt: skip


def test_key_cache_forgets_after_the_ttl_and_is_bounded() -> None:
    clock = _Clock()
    cache = KeyCache(ttl_s=5, max_entries=2, clock=clock)
    cache.put("rkb_a_1", _caller("a"), generation=cache.generation)
    assert cache.get("rkb_a_1") == _caller("a")
    assert cache.get("rkb_a_2") is None  # another secret is another key
    clock.now = 4.9
    assert cache.get("rkb_a_1") is not None
    clock.now = 5.0
    assert cache.get("rkb_a_1") is None
    for name in ("a", "b", "c"):
        cache.put(f"rkb_{name}_1", _caller(name), generation=cache.generation)
    assert len(cache) == 2
    assert cache.get("rkb_a_1") is None  # the least recently used went first
    assert cache.get("rkb_c_1") is not None


def test_key_cache_honours_expiry_exactly_and_clear_beats_a_lookup_in_flight() -> None:
    cache = KeyCache(ttl_s=60, max_entries=10)
    cache.put("rkb_a_1", _caller("a", expires_in_s=-0.001), generation=cache.generation)
    assert cache.get("rkb_a_1") is None
    # A lookup read the row before a revocation cleared the cache: its answer is not kept.
    generation = cache.generation
    cache.clear()
    cache.put("rkb_b_1", _caller("b"), generation=generation)
    assert cache.get("rkb_b_1") is None
    off = KeyCache(ttl_s=0, max_entries=10)
    off.put("rkb_a_1", _caller("a"), generation=off.generation)
    assert off.get("rkb_a_1") is None


def test_resolved_key_carries_its_expiry(session: Session) -> None:
    acme = create_tenant(session, name="acme")
    expires_at = utcnow() + timedelta(hours=1)
    issued = issue_api_key(session, tenant=acme, expires_at=expires_at)
    session.commit()
    context = resolve_api_key(session, presented_key=issued.plaintext)
    assert context is not None
    assert context.key_expires_at is not None
    assert abs((context.key_expires_at - expires_at).total_seconds()) < 1e-3
