from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import create_db_engine, create_session_factory, run_migrations
from core.models import ApiKey, utcnow
from core.settings import Settings
from core.tenancy import (
    TenantExistsError,
    create_tenant,
    get_tenant_by_name,
    issue_api_key,
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
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
