"""salads.seed_request_key: GET /send_command retried with its Idempotency-Key hands out the same salad

A salad was marked collected in the transaction before its answer went out: a Master killed (or a connection
cut) in between lost that completion for good. The key a salad went out under lets a retry get it again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 23:50:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

KEYED = sa.text('seed_request_key IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seed_request_key', sqlmodel.sql.sqltypes.AutoString(length=255),
                                      nullable=True))
        batch_op.create_index('ix_salads_seed_request_key', ['seed_request_key'], unique=True,
                              postgresql_where=KEYED)


def downgrade() -> None:
    with op.batch_alter_table('salads', schema=None) as batch_op:
        batch_op.drop_index('ix_salads_seed_request_key', postgresql_where=KEYED)
        batch_op.drop_column('seed_request_key')
