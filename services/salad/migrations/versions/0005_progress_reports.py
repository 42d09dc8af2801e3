"""Progress travels in Master's reports: salads.progress_due; orders.counts and counts_at

Shared reads no table of Master's: the fruit counts of an order come in Master's reports and are kept on the
order. Master flags an order whose counts changed (progress_due, indexed while set) and its relay sends the
latest counts of the flagged orders.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 20:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress_due', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_salads_progress_due', ['order_id'], unique=False,
                              postgresql_where=sa.text('progress_due'))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('counts', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('counts_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('counts_at')
        batch_op.drop_column('counts')
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.drop_index('ix_salads_progress_due', postgresql_where=sa.text('progress_due'))
        batch_op.drop_column('progress_due')
