"""per-document access lists and custom metadata

Revision ID: 0004_document_access
Revises: 0003_keys_limits_audit
Create Date: 2026-11-23 11:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004_document_access"
down_revision: str | None = "0003_keys_limits_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL principals: readable by every principal of the tenant (what every existing row means).
    for table in ("ingest_jobs", "documents"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("principals", sa.JSON(), nullable=True))
            batch_op.add_column(sa.Column("document_metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("documents", "ingest_jobs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("document_metadata")
            batch_op.drop_column("principals")
