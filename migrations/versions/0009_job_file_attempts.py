"""job_files.attempts: how many times a worker took the file (a file is given up after N)

Revision ID: 0009_job_file_attempts
Revises: 0007_job_ocr_mode
Create Date: 2026-11-29 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0009_job_file_attempts"
down_revision: str | None = "0007_job_ocr_mode"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_files") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("job_files") as batch:
        batch.drop_column("attempts")
