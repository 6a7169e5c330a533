"""Conversation turns stay in order when exchanges in one conversation are stored at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import create_db_engine, create_session_factory, run_migrations
from core.models import Conversation, ConversationTurn, utcnow
from core.settings import Settings
from core.tenancy import create_tenant
from generation.conversations import append_exchange

EXCHANGES = 12


def _turns(settings: Settings, conversation_id: str) -> list[tuple[int, str, str]]:
    engine = create_db_engine(settings)
    try:
        with create_session_factory(engine)() as session:
            rows = session.scalars(
                select(ConversationTurn)
                .where(ConversationTurn.conversation_id == conversation_id)
                .order_by(ConversationTurn.position)
            ).all()
            return [(t.position, t.role, t.content) for t in rows]
    finally:
        engine.dispose()


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    run_migrations(settings)
    engine = create_db_engine(settings)
    try:
        yield create_session_factory(engine)
    finally:
        engine.dispose()


def _new_conversation(sessions: sessionmaker[Session], tenant_name: str) -> tuple[str, str]:
    """A tenant and a conversation of it: (tenant id, conversation id)."""
    with sessions() as session:
        tenant = create_tenant(session, name=tenant_name)
        conversation = Conversation(tenant_id=tenant.id)
        session.add(conversation)
        session.commit()
        return tenant.id, conversation.id


def test_exchanges_stored_at_once_each_get_their_own_positions(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    tenant_id, conversation_id = _new_conversation(sessions, "acme")
    start = threading.Barrier(EXCHANGES)
    stored: list[bool] = []

    def ask(n: int) -> None:
        start.wait()
        stored.append(
            append_exchange(
                sessions,
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                question=f"q{n}",
                answer=f"a{n}",
            )
        )

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(EXCHANGES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert stored == [True] * EXCHANGES
    turns = _turns(settings, conversation_id)
    assert [p for p, _, _ in turns] == list(range(2 * EXCHANGES))
    # Every question is followed by its own answer.
    pairs = list(zip(turns[::2], turns[1::2], strict=True))
    assert all(q[1] == "user" and a[1] == "assistant" for q, a in pairs)
    assert sorted(q[2][1:] for q, _ in pairs) == sorted(str(n) for n in range(EXCHANGES))
    assert all(q[2][1:] == a[2][1:] for q, a in pairs)


def test_another_tenants_conversation_is_not_written(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    _, conversation_id = _new_conversation(sessions, "acme")
    other_id, _ = _new_conversation(sessions, "globex")
    written = append_exchange(
        sessions, tenant_id=other_id, conversation_id=conversation_id, question="q", answer="a"
    )
    assert written is False
    assert _turns(settings, conversation_id) == []


def test_the_migration_renumbers_turns_that_clashed(settings: Settings) -> None:
    """Stores written before the constraint may hold two exchanges at the same positions."""
    run_migrations(settings, revision="0005_vector_indexes")
    engine = create_db_engine(settings)
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('t', 'acme', :now)"),
            {"now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO conversations (id, tenant_id, created_at, updated_at) "
                "VALUES ('c', 't', :now, :now)"
            ),
            {"now": now},
        )
        rows = [  # two exchanges written at once at positions 2 and 3, after a first one
            ("u0", 0, "user", "q0", 0), ("a0", 1, "assistant", "a0", 0),
            ("u1", 2, "user", "q1", 1), ("a1", 3, "assistant", "a1", 1),
            ("u2", 2, "user", "q2", 2), ("a2", 3, "assistant", "a2", 2),
        ]  # fmt: skip
        for turn_id, position, role, content, second in rows:
            connection.execute(
                sa.text(
                    "INSERT INTO conversation_turns "
                    "(id, conversation_id, position, role, content, created_at) "
                    "VALUES (:id, 'c', :position, :role, :content, :at)"
                ),
                {"id": turn_id, "position": position, "role": role, "content": content,
                 "at": now + timedelta(seconds=second)},
            )  # fmt: skip
    engine.dispose()
    run_migrations(settings)
    assert [(p, c) for p, _, c in _turns(settings, "c")] == [
        (0, "q0"), (1, "a0"), (2, "q1"), (3, "a1"), (4, "q2"), (5, "a2"),
    ]  # fmt: skip
