"""drop ix_tasks_order_id: uq_tasks_order_position already leads with order_id

Every version of a task row (queued, claimed, finished) wrote an entry into both indexes; lookups by
order use the unique index just as well.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 07:15:00
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_order_id')


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_order_id', ['order_id'], unique=False)
