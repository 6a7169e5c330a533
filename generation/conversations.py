"""Conversation history per tenant: load the recent turns, append a question and its answer."""

from __future__ import annotations

from sqlalchemy import select
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


def append_exchange(
    session: Session, *, conversation: Conversation, question: str, answer: str
) -> None:
    position = len(conversation.turns)
    for offset, (role, content) in enumerate((("user", question), ("assistant", answer))):
        session.add(
            ConversationTurn(
                conversation_id=conversation.id,
                position=position + offset,
                role=role,
                content=content,
            )
        )
    conversation.updated_at = utcnow()
