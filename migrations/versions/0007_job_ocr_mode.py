"""ingest_jobs.ocr_mode: an upload can ask for every PDF page to be read with OCR

Revision ID: 0007_job_ocr_mode
Revises: 0006_turn_positions_unique
Create Date: 2026-11-29 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_job_ocr_mode"
down_revision: str | None = "0006_turn_positions_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_jobs") as batch:
        batch.add_column(
            sa.Column("ocr_mode", sa.String(8), nullable=False, server_default="auto")
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_jobs") as batch:
        batch.drop_column("ocr_mode")
