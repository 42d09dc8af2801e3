"""indexes for retention: finished orders and salads by the time they finished

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_completed_at', ['completed_at'], unique=False,
                              postgresql_where=sa.text('completed_at IS NOT NULL'))
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.create_index('ix_salads_finished_at', ['finished_at'], unique=False,
                              postgresql_where=sa.text('finished_at IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.drop_index('ix_salads_finished_at')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_completed_at')
