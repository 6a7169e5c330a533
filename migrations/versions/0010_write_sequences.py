"""write sequences: accepted file versions and deletes are numbered; the newest one wins

Revision ID: 0010_write_sequences
Revises: 0006_turn_positions_unique
Create Date: 2026-11-29 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0010_write_sequences"
down_revision: str | None = "0009_job_file_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing documents hold sequence 0: every version accepted from now on is newer. Files
    # still queued get their number when a worker claims them (NULL until then).
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("job_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.create_table(
        "document_tombstones",
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("document_id"),
    )
    op.create_index("ix_document_tombstones_tenant_id", "document_tombstones", ["tenant_id"])
    if op.get_bind().dialect.name == "postgresql":
        # nextval never waits for another transaction (a counter row would, for a whole upload).
        op.execute("CREATE SEQUENCE ragkb_write_sequence START WITH 1")
    else:
        # SQLite has one writer at a time anyway: a counter row is as good as a sequence.
        op.create_table(
            "write_sequence",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("value", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.execute("INSERT INTO write_sequence (id, value) VALUES (1, 0)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE ragkb_write_sequence")
    else:
        op.drop_table("write_sequence")
    op.drop_index("ix_document_tombstones_tenant_id", table_name="document_tombstones")
    op.drop_table("document_tombstones")
    with op.batch_alter_table("job_files", schema=None) as batch_op:
        batch_op.drop_column("sequence")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_column("sequence")
