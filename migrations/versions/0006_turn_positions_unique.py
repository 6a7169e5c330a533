"""conversation_turns: one turn per (conversation, position)

Revision ID: 0006_turn_positions_unique
Revises: 0005_vector_indexes
Create Date: 2026-11-24 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006_turn_positions_unique"
down_revision: str | None = "0005_vector_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

turns = sa.table(
    "conversation_turns",
    sa.column("id", sa.String),
    sa.column("conversation_id", sa.String),
    sa.column("position", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    # Two questions asked at once in one conversation could store their turns at the same
    # positions. Renumber those conversations in the order the turns were written (an exchange's
    # two turns share a transaction and keep their own order) so the constraint can be created.
    connection = op.get_bind()
    clashing = connection.execute(
        sa.select(turns.c.conversation_id)
        .group_by(turns.c.conversation_id, turns.c.position)
        .having(sa.func.count() > 1)
        .distinct()
    ).scalars().all()
    for conversation_id in clashing:
        rows = connection.execute(
            sa.select(turns.c.id)
            .where(turns.c.conversation_id == conversation_id)
            .order_by(turns.c.created_at, turns.c.position, turns.c.id)
        ).scalars().all()
        for position, turn_id in enumerate(rows):
            connection.execute(
                turns.update().where(turns.c.id == turn_id).values(position=position)
            )
    with op.batch_alter_table("conversation_turns", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_conversation_turns_position", ["conversation_id", "position"]
        )


def downgrade() -> None:
    with op.batch_alter_table("conversation_turns", schema=None) as batch_op:
        batch_op.drop_constraint("uq_conversation_turns_position", type_="unique")
