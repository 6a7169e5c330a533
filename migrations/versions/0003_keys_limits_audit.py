"""key scopes and expiry, tenant limits, audit log

Revision ID: 0003_keys_limits_audit
Revises: 0002_conversations
Create Date: 2026-11-23 09:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003_keys_limits_audit"
down_revision: str | None = '0002_conversations'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keys issued before scopes existed keep what they could do then (ingest, query, read); the admin
# API is new, so no existing key is silently given it.
EXISTING_KEY_SCOPES = "ingest query read"


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=100), nullable=False,
                                      server_default=EXISTING_KEY_SCOPES))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queries_per_minute', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ingest_per_minute', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('max_documents', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_stored_bytes', sa.BigInteger(), nullable=True))

    op.create_table('audit_events',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('api_key_id', sa.String(length=36), nullable=True),
    sa.Column('principal', sa.String(length=200), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_tenant_at', ['tenant_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_tenant_at')
    op.drop_table('audit_events')

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('max_stored_bytes')
        batch_op.drop_column('max_documents')
        batch_op.drop_column('ingest_per_minute')
        batch_op.drop_column('queries_per_minute')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('scopes')
