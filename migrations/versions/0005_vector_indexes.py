"""vector_indexes: which collection (embedding model) is active, building or kept for rollback

Revision ID: 0005_vector_indexes
Revises: 0004_document_access
Create Date: 2026-11-24 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0005_vector_indexes"
down_revision: str | None = "0004_document_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No rows: the first process to start registers its configured model's collection as active
    # (it is the collection it was already using), so an upgrade needs no data step.
    op.create_table(
        "vector_indexes",
        sa.Column("collection", sa.String(length=200), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_path", sa.String(length=1024), nullable=True),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("points_copied", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("collection"),
    )


def downgrade() -> None:
    op.drop_table("vector_indexes")
