"""SQLAlchemy 2.0 typed models: tenants, API keys, documents, ingest jobs and the audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class FileState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in (FileState.DONE, FileState.FAILED, FileState.SKIPPED)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Per-tenant overrides of the default limits (settings.limits); None: the default applies.
    queries_per_minute: Mapped[float | None] = mapped_column(Float, default=None)
    ingest_per_minute: Mapped[float | None] = mapped_column(Float, default=None)
    query_burst: Mapped[int | None] = mapped_column(Integer, default=None)
    ingest_burst: Mapped[int | None] = mapped_column(Integer, default=None)
    max_documents: Mapped[int | None] = mapped_column(Integer, default=None)
    max_stored_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Queries from the tenant's keys must name the end user (`principals`), unless a key says
    # otherwise: an app that forgets the field gets a 400 instead of every restricted document.
    require_principals: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The public part of the key, used to find the row; the secret part is only stored hashed.
    lookup_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # Space-separated scope names (core.tenancy.Scope).
    scopes: Mapped[str] = mapped_column(String(100), default="ingest query read")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # True or False overrides the tenant's `require_principals`; None follows it.
    require_principals: Mapped[bool | None] = mapped_column(Boolean, default=None)

    tenant: Mapped[Tenant] = relationship()


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "path", name="uq_documents_tenant_path"),)

    # Deterministic (uuid5 of tenant and path), so points can be named before the row exists.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    version_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(500), default=None)
    # Who may read it (user/group ids); None: every principal of the tenant.
    principals: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    document_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    # The write sequence of the upload that made this version (ingest.versions): an older one
    # never replaces it. 0: stored before sequences existed.
    sequence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DocumentTombstone(Base):
    """A deleted document's last write sequence: uploads accepted before the delete, finishing
    after it, must not bring the document back (ingest.versions)."""

    __tablename__ = "document_tombstones"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IngestJob(Base):
    __tablename__ = "ingest_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Given with the upload, applied to every file of the job.
    principals: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    document_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    # "auto" or "force": whether every PDF page is read with OCR (ingest.pdf).
    ocr_mode: Mapped[str] = mapped_column(String(8), default="auto", server_default="auto")

    files: Mapped[list[JobFile]] = relationship(
        back_populates="job", order_by="JobFile.position", cascade="all, delete-orphan"
    )


class JobFile(Base):
    __tablename__ = "job_files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("ingest_jobs.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))
    # Where the upload waits for its worker; cleared once the file is finished.
    staged_path: Mapped[str | None] = mapped_column(String(2048), default=None)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    # Taken when the upload was accepted: versions of one path apply in this order. None: queued
    # before sequences existed (numbered when claimed).
    sequence: Mapped[int | None] = mapped_column(BigInteger, default=None)
    state: Mapped[FileState] = mapped_column(String(16), default=FileState.QUEUED)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    document_id: Mapped[str | None] = mapped_column(String(36), default=None)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # Times a worker claimed the file: a file whose processing never ends (a restart re-queues
    # it) is failed after `ingest.parse_attempts` instead of being taken again forever.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    job: Mapped[IngestJob] = relationship(back_populates="files")


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The end user it was started for (sorted principals); None: a caller without an end user.
    # Only the same set of principals may continue it (core.principals.same_principals).
    principals: Mapped[list[str] | None] = mapped_column(JSON, default=None)

    turns: Mapped[list[ConversationTurn]] = relationship(
        back_populates="conversation",
        order_by="ConversationTurn.position",
        cascade="all, delete-orphan",
    )


class ConversationTurn(Base):
    __tablename__ = "conversation_turns"
    __table_args__ = (
        UniqueConstraint("conversation_id", "position", name="uq_conversation_turns_position"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when the content was replaced because a document it drew on was deleted or closed
    # to the conversation's end user.
    redacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    conversation: Mapped[Conversation] = relationship(back_populates="turns")
    sources: Mapped[list[TurnSource]] = relationship(cascade="all, delete-orphan")


class TurnSource(Base):
    """A document whose text reached the reader for an answer turn: the answer may quote it, so
    deleting the document (or closing it to the conversation's end user) redacts the turn."""

    __tablename__ = "conversation_turn_sources"
    __table_args__ = (Index("ix_turn_sources_tenant_document", "tenant_id", "document_id"),)

    turn_id: Mapped[str] = mapped_column(
        ForeignKey("conversation_turns.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))


class AuditEvent(Base):
    """Who did what, when, with what outcome; never document text, questions or secrets."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_at", "tenant_id", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Not a foreign key: the event outlives a deleted key.
    api_key_id: Mapped[str | None] = mapped_column(String(36), default=None)
    principal: Mapped[str | None] = mapped_column(String(200), default=None)
    action: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(20))
    target: Mapped[str | None] = mapped_column(String(200), default=None)
    # Small JSON object of counts and ids (e.g. {"question_chars": 42}).
    details: Mapped[str] = mapped_column(Text, default="{}")


class IndexState(StrEnum):
    BUILDING = "building"  # `ragkb reindex` is filling it; nothing reads it yet
    ACTIVE = "active"  # queries and ingest use it (exactly one row)
    STANDBY = "standby"  # a former active one, kept for rollback until `--drop-old`


class VectorIndex(Base):
    """One Qdrant collection per embedding model; the ACTIVE row is what every process serves.

    This row is the pointer that switches models (a Qdrant alias names a collection but not the
    model that embeds its queries, and qdrant-edge has no aliases): one transaction moves it.
    """

    __tablename__ = "vector_indexes"

    collection: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    dimension: Mapped[int] = mapped_column(Integer)
    state: Mapped[IndexState] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # When it stopped being active: a rollback to it only re-copies what changed since.
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # Who runs the build ("host:pid"); None while a request waits for the store's owner.
    runner: Mapped[str | None] = mapped_column(String(200), default=None)
    points_copied: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
