"""reaper_runs: when a reaper last ran, on any Master replica

A reaper pass extends every running lease instead of reaping when no reaper ran anywhere for half a lease
(workers could not heartbeat meanwhile). Each replica used to decide that from its own restart, so one
replica restarting extended the leases of workers that had died.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reaper_runs',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_run', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('previous_run', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('reaper_runs')
