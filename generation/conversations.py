"""Conversation history per tenant: load the recent turns, append a question and its answer."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.models import Conversation, ConversationTurn, utcnow


class ConversationNotFoundError(LookupError):
    pass


def get_or_create_conversation(
    session: Session, *, tenant_id: str, conversation_id: str | None
) -> Conversation:
    """The tenant's conversation, or a new one; another tenant's id is reported as not found."""
    if conversation_id is None:
        conversation = Conversation(tenant_id=tenant_id)
        session.add(conversation)
        session.flush()
        return conversation
    found = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.tenant_id == tenant_id)
        .options(selectinload(Conversation.turns))
    )
    if found is None:
        raise ConversationNotFoundError("no such conversation")
    return found


def recent_history(conversation: Conversation, *, max_turns: int) -> list[tuple[str, str]]:
    turns = conversation.turns[-max_turns:] if max_turns else []
    return [(t.role, t.content) for t in turns]


# Writing to the conversation row first makes concurrent exchanges in one conversation wait for
# each other (a row lock in PostgreSQL, the write lock in SQLite); the unique position is the
# safety net, and the loser of a clash reads the positions again.
APPEND_ATTEMPTS = 3


def append_exchange(
    session_factory: Callable[[], Session],
    *,
    tenant_id: str,
    conversation_id: str,
    question: str,
    answer: str,
) -> bool:
    """Store a question and its answer as the conversation's next two turns, in their own
    transaction; False when the conversation no longer exists (deleted meanwhile)."""
    for attempt in range(APPEND_ATTEMPTS):
        with session_factory() as session:
            touched = session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.tenant_id == tenant_id)
                .values(updated_at=utcnow())
            )
            if touched.rowcount == 0:  # type: ignore[attr-defined]  # a CursorResult
                return False
            last = session.scalar(
                select(func.max(ConversationTurn.position)).where(
                    ConversationTurn.conversation_id == conversation_id
                )
            )
            position = 0 if last is None else last + 1
            for offset, (role, content) in enumerate((("user", question), ("assistant", answer))):
                session.add(
                    ConversationTurn(
                        conversation_id=conversation_id,
                        position=position + offset,
                        role=role,
                        content=content,
                    )
                )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
                continue
            return True
    raise AssertionError("unreachable")
