"""end users: principals required per tenant/key, conversations bound to their end user, the
documents each answer turn drew on

Revision ID: 0012_end_user_boundary
Revises: 0011_tenant_bursts
Create Date: 2026-11-29 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0012_end_user_boundary"
down_revision: str | None = "0011_tenant_bursts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "require_principals", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        # NULL: the key follows its tenant's setting.
        batch_op.add_column(sa.Column("require_principals", sa.Boolean(), nullable=True))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        # NULL: started without an end user. Existing conversations become that: continuing one
        # for an end user is a 404 (its history may quote what that end user may not read).
        batch_op.add_column(sa.Column("principals", sa.JSON(), nullable=True))
    with op.batch_alter_table("conversation_turns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "conversation_turn_sources",
        sa.Column("turn_id", sa.String(length=36), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["conversation_turns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("turn_id", "document_id"),
    )
    op.create_index(
        "ix_turn_sources_tenant_document",
        "conversation_turn_sources",
        ["tenant_id", "document_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_turn_sources_tenant_document", table_name="conversation_turn_sources")
    op.drop_table("conversation_turn_sources")
    with op.batch_alter_table("conversation_turns", schema=None) as batch_op:
        batch_op.drop_column("redacted_at")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("principals")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("require_principals")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("require_principals")
