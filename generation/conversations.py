"""Conversation history per tenant and end user: load the turns the caller may still read,
append a question and its answer, redact answers whose documents went away.

A conversation belongs to the end user it was started for (its principals, compared as a set;
None for a caller without an end user): anyone else gets "not found", like an unknown id. Its
history feeds the rewrite of a follow-up, so each answer turn records the documents whose text
reached the reader (`conversation_turn_sources`): an answer drawing on a document the caller may
no longer read is left out of the history, and deleting a document (or closing it to the
conversation's end user) replaces such answers' text with `REDACTED_ANSWER`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.models import Conversation, ConversationTurn, Document, TurnSource, utcnow
from core.principals import may_read, same_principals
from core.redaction import REDACTED_ANSWER


class ConversationNotFoundError(LookupError):
    pass


def _principal_list(principals: Iterable[str] | None) -> list[str] | None:
    return sorted(set(principals)) if principals is not None else None


def get_or_create_conversation(
    session: Session,
    *,
    tenant_id: str,
    conversation_id: str | None,
    principals: Sequence[str] | None = None,
) -> Conversation:
    """The conversation, or a new one bound to `principals`; another tenant's id, or one started
    for another end user (other principals, or with/without an end user), is not found."""
    if conversation_id is None:
        conversation = Conversation(tenant_id=tenant_id, principals=_principal_list(principals))
        session.add(conversation)
        session.flush()
        return conversation
    found = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.tenant_id == tenant_id)
        .options(selectinload(Conversation.turns).selectinload(ConversationTurn.sources))
    )
    # The same answer for "someone else's" as for "no such": a 403 would confirm the id exists.
    if found is None or not same_principals(found.principals, principals):
        raise ConversationNotFoundError("no such conversation")
    return found


@dataclass(frozen=True)
class History:
    """What a follow-up is rewritten from: (role, content) turns, and the documents their
    answers drew on (the rewrite carries their text into the next answer, so that answer draws
    on them too)."""

    turns: list[tuple[str, str]] = field(default_factory=list)
    document_ids: frozenset[str] = frozenset()


def recent_history(
    session: Session,
    conversation: Conversation,
    *,
    principals: Sequence[str] | None,
    max_turns: int,
) -> History:
    """The last `max_turns` turns the caller may still read.

    An exchange (question and answer) is left out when its answer was redacted, or drew on a
    document that is gone or whose access list no longer admits `principals`: the rewrite must
    not be fed text the caller could not retrieve now.
    """
    if not max_turns:
        return History()
    turns = conversation.turns
    cited = {s.document_id for t in turns for s in t.sources}
    readable = _readable_documents(session, conversation.tenant_id, cited, principals)
    kept: list[ConversationTurn] = []
    for turn in turns:
        if turn.role == "assistant" and (
            turn.redacted_at is not None or any(s.document_id not in readable for s in turn.sources)
        ):
            if kept and kept[-1].role == "user":
                kept.pop()  # its question goes with it: a follow-up needs the pair or neither
            continue
        kept.append(turn)
    window = kept[-max_turns:]
    return History(
        turns=[(t.role, t.content) for t in window],
        document_ids=frozenset(s.document_id for t in window for s in t.sources),
    )


def _readable_documents(
    session: Session, tenant_id: str, document_ids: set[str], principals: Sequence[str] | None
) -> set[str]:
    if not document_ids:
        return set()
    rows = session.execute(
        select(Document.id, Document.principals).where(
            Document.tenant_id == tenant_id, Document.id.in_(sorted(document_ids))
        )
    ).all()
    return {doc_id for doc_id, access in rows if may_read(principals, access)}


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
    source_document_ids: Iterable[str] = (),
) -> bool:
    """Store a question and its answer as the conversation's next two turns, in their own
    transaction, with the documents whose text reached the reader for the answer (its sources
    and the history's documents, `History.document_ids`); False when the conversation no longer
    exists (deleted meanwhile).

    A source deleted or closed to the conversation's end user while the answer was being read
    makes the answer stored redacted: the source rows are locked (PostgreSQL) before they are
    checked, and a delete removes the row before it redacts, so one of the two always sees the
    other.
    """
    sources = sorted(set(source_document_ids))
    for attempt in range(APPEND_ATTEMPTS):
        with session_factory() as session:
            touched = session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.tenant_id == tenant_id)
                .values(updated_at=utcnow())
            )
            if touched.rowcount == 0:  # type: ignore[attr-defined]  # a CursorResult
                return False
            bound_to = session.scalar(
                select(Conversation.principals).where(Conversation.id == conversation_id)
            )
            stored_answer, redacted_at = answer, None
            if sources and not _still_readable(session, tenant_id, sources, bound_to):
                stored_answer, redacted_at = REDACTED_ANSWER, utcnow()
            last = session.scalar(
                select(func.max(ConversationTurn.position)).where(
                    ConversationTurn.conversation_id == conversation_id
                )
            )
            position = 0 if last is None else last + 1
            session.add(
                ConversationTurn(
                    conversation_id=conversation_id,
                    position=position,
                    role="user",
                    content=question,
                )
            )
            session.add(
                ConversationTurn(
                    conversation_id=conversation_id,
                    position=position + 1,
                    role="assistant",
                    content=stored_answer,
                    redacted_at=redacted_at,
                    sources=[TurnSource(document_id=d, tenant_id=tenant_id) for d in sources],
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


def _still_readable(
    session: Session, tenant_id: str, document_ids: list[str], principals: list[str] | None
) -> bool:
    rows = session.execute(
        select(Document.id, Document.principals)
        .where(Document.tenant_id == tenant_id, Document.id.in_(document_ids))
        .with_for_update()
    ).all()
    return len(rows) == len(document_ids) and all(may_read(principals, a) for _, a in rows)
