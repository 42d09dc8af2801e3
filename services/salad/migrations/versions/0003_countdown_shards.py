"""an order's countdown spread over shard rows, so results of one order do not queue on one row lock

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SHARDS = 16  # salad.master.tasks.COUNTDOWN_SHARDS when this revision was written


def upgrade() -> None:
    op.create_table('countdowns',
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('order_id', 'shard')
    )
    # Orders already split count what their tasks still lack, shard by shard.
    op.execute(
        "INSERT INTO countdowns (order_id, shard, remaining) "
        f"SELECT order_id, position % {SHARDS}, SUM(CASE WHEN status = 'succeeded' THEN 0 ELSE 1 END) "
        f"FROM tasks GROUP BY order_id, position % {SHARDS}"
    )
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.drop_column('remaining')


def downgrade() -> None:
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remaining', sa.Integer(), nullable=False, server_default='0'))
    op.execute(
        "UPDATE salads SET remaining = "
        "(SELECT COALESCE(SUM(remaining), 0) FROM countdowns WHERE countdowns.order_id = salads.order_id)"
    )
    op.drop_table('countdowns')
