"""Stored text that came from documents: what to remove when a document goes away.

Document text is kept, outside the vector store's points, only in conversation answer turns (an
answer may quote its sources). Each answer turn records the documents whose text reached the
reader (`conversation_turn_sources`), so deleting a document, or closing it to a conversation's
end user, replaces those answers' text with `REDACTED_ANSWER`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Conversation, ConversationTurn, TurnSource, utcnow
from core.principals import may_read

REDACTED_ANSWER = (
    "[removed: this answer drew on a document that was deleted or is no longer readable]"
)


def redact_turns_drawing_on(
    session: Session,
    *,
    tenant_id: str,
    document_id: str,
    readable_by: Sequence[str] | None = None,
    deleted: bool = True,
) -> int:
    """Replace the text of the tenant's answer turns that drew on a document; the caller commits.

    `deleted=True` (the document is gone): every such turn. `deleted=False` (its access list is
    now `readable_by`, None: everyone): only turns of conversations whose end user may no longer
    read it. Returns the number of turns redacted.
    """
    rows = session.execute(
        select(ConversationTurn, Conversation.principals)
        .join(TurnSource, TurnSource.turn_id == ConversationTurn.id)
        .join(Conversation, Conversation.id == ConversationTurn.conversation_id)
        .where(
            TurnSource.tenant_id == tenant_id,
            TurnSource.document_id == document_id,
            ConversationTurn.redacted_at.is_(None),
        )
    ).all()
    now, redacted = utcnow(), 0
    for turn, principals in rows:
        if not deleted and may_read(principals, readable_by):
            continue
        turn.content, turn.redacted_at = REDACTED_ANSWER, now
        redacted += 1
    session.flush()
    return redacted
