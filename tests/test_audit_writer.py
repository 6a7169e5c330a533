"""The off-request audit writer against the real database: batches, backpressure, retries."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from core.audit import AuditAction, event
from core.audit_writer import AuditWriter
from core.db import create_db_engine, create_session_factory, run_migrations
from core.models import AuditEvent, Tenant
from core.settings import Settings


def _actions(settings: Settings) -> list[str]:
    engine = create_db_engine(settings)
    with create_session_factory(engine)() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.at)))
    engine.dispose()
    return actions


def _tenant(settings: Settings) -> str:
    engine = create_db_engine(settings)
    with create_session_factory(engine)() as session:
        tenant = Tenant(name=f"t-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        session.commit()
        tenant_id = tenant.id
    engine.dispose()
    return tenant_id


def test_queued_events_are_written_and_flush_waits_for_them(settings: Settings) -> None:
    run_migrations(settings)
    tenant_id = _tenant(settings)
    engine = create_db_engine(settings)
    writer = AuditWriter(create_session_factory(engine), queue_size=100, batch_size=7)
    for _ in range(20):
        assert writer.submit(event(tenant_id=tenant_id, action=AuditAction.SEARCH))
    assert writer.flush(timeout_s=10)
    assert _actions(settings) == ["search"] * 20
    writer.close()
    engine.dispose()


def test_flush_cuts_the_gathering_short(settings: Settings) -> None:
    run_migrations(settings)
    tenant_id = _tenant(settings)
    engine = create_db_engine(settings)
    writer = AuditWriter(
        create_session_factory(engine), queue_size=100, batch_size=100, gather_s=60
    )
    for _ in range(3):
        assert writer.submit(event(tenant_id=tenant_id, action=AuditAction.SEARCH))
    assert writer.flush(timeout_s=10)
    assert _actions(settings) == ["search"] * 3
    writer.close()
    engine.dispose()


def test_a_full_queue_hands_the_event_back_and_close_writes_the_rest(settings: Settings) -> None:
    run_migrations(settings)
    tenant_id = _tenant(settings)
    engine = create_db_engine(settings)
    writer = AuditWriter(create_session_factory(engine), queue_size=2, batch_size=1)
    # Far more than the queue holds: some are refused, and their caller writes them itself.
    refused = 0
    for _ in range(50):
        pending = event(tenant_id=tenant_id, action=AuditAction.SEARCH)
        if not writer.submit(pending):
            refused += 1
            writer.write_now(pending)
    writer.close()
    assert refused > 0
    assert len(_actions(settings)) == 50
    late = event(tenant_id=tenant_id, action=AuditAction.SEARCH)
    assert not writer.submit(late), "a closed writer takes no more events"
    engine.dispose()


def test_a_failed_batch_is_retried_until_the_database_takes_it(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    run_migrations(settings)
    tenant_id = _tenant(settings)
    engine = create_db_engine(settings)
    # The table is away (renamed, so it comes back in one step): every write fails meanwhile.
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    writer = AuditWriter(create_session_factory(engine), queue_size=10, batch_size=10, retry_s=0.05)
    assert writer.submit(event(tenant_id=tenant_id, action=AuditAction.SEARCH))
    assert not writer.flush(timeout_s=0.3)
    assert "retrying" in caplog.text
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
    assert writer.flush(timeout_s=10)
    assert _actions(settings) == ["search"]
    writer.close()
    engine.dispose()


def test_an_event_the_database_refuses_does_not_hold_up_the_others(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    run_migrations(settings)
    tenant_id = _tenant(settings)
    engine = create_db_engine(settings)
    writer = AuditWriter(create_session_factory(engine), queue_size=10, batch_size=10)
    writer.submit(event(tenant_id=tenant_id, action=AuditAction.SEARCH))
    writer.submit(event(tenant_id="no-such-tenant", action=AuditAction.QUERY))
    writer.submit(event(tenant_id=tenant_id, action=AuditAction.CHAT))
    assert writer.flush(timeout_s=10)
    assert sorted(_actions(settings)) == ["chat", "search"]
    assert "refused by the database" in caplog.text
    writer.close()
    engine.dispose()
