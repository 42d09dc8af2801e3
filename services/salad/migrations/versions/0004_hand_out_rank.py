"""tasks.hand_out_rank: the claim's order within an order, planned at the split; workers.prefetch

The queue's index led with the fruit's time (longest first); it leads with the planned rank now. Queued
tasks of an older Master get the rank longest first would have given them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 20:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prefetch', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hand_out_rank', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_index('ix_tasks_queued')
    op.execute(
        "UPDATE tasks SET hand_out_rank = ranked.rank FROM ("
        " SELECT id, row_number() OVER (PARTITION BY order_id ORDER BY execution_time DESC, id) - 1 AS rank"
        " FROM tasks WHERE status = 'queued') AS ranked"
        " WHERE tasks.id = ranked.id"
    )
    queue_index(['hand_out_rank'])


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_queued')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('hand_out_rank')
    queue_index([sa.text('execution_time DESC')])
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('prefetch')


def queue_index(within_an_order: list) -> None:
    """The claim's index: priority, the order, then the order's own hand-out."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        columns = [sa.text('priority DESC'), 'order_id', *within_an_order, 'id']
        batch_op.create_index('ix_tasks_queued', columns, unique=False,
                              postgresql_where=QUEUED)
