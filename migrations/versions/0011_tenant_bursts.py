"""tenants: their own query and upload bursts

Revision ID: 0011_tenant_bursts
Revises: 0010_write_sequences
Create Date: 2026-11-29 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0011_tenant_bursts"
down_revision: str | None = "0010_write_sequences"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null: a minute of the tenant's rate, at most the configured default burst.
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("query_burst", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("ingest_burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("ingest_burst")
        batch_op.drop_column("query_burst")
