"""order_totals: orders completed and failed, all time, kept by a trigger on orders

The dashboard showed them by counting every finished order on each read (twice a second while a page is
open), a cost that grew with the table. The totals are now kept as orders change status: by a trigger, so
every writer counts, a Shared of an older revision during a rolling upgrade too; deferred to the commit, so
the one row is locked last, after the orders a report batch locks, and only for the commit: two batches
cannot deadlock on it. Deleting finished orders (retention) leaves the totals as they are: all time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

FINISHED = "('completed', 'failed')"


def upgrade() -> None:
    # No order changes status until this commits, so none is missed by the count below or counted twice.
    op.execute("LOCK TABLE orders IN SHARE MODE")
    op.create_table(
        'order_totals',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('completed', sa.BigInteger(), nullable=False),
        sa.Column('failed', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.execute("""
        CREATE FUNCTION count_finished_orders() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE order_totals
            SET completed = completed + (NEW.status = 'completed')::int - (OLD.status = 'completed')::int,
                failed = failed + (NEW.status = 'failed')::int - (OLD.status = 'failed')::int
            WHERE id = 1;
            RETURN NULL;
        END
        $$""")
    op.execute(f"""
        CREATE CONSTRAINT TRIGGER count_finished_orders AFTER UPDATE OF status ON orders
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (OLD.status IS DISTINCT FROM NEW.status
              AND (OLD.status IN {FINISHED} OR NEW.status IN {FINISHED}))
        EXECUTE FUNCTION count_finished_orders()""")
    # The orders finished so far; the trigger counts the ones to come.
    op.execute("""
        INSERT INTO order_totals (id, completed, failed)
        SELECT 1, count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
        FROM orders""")


def downgrade() -> None:
    op.execute("DROP TRIGGER count_finished_orders ON orders")
    op.execute("DROP FUNCTION count_finished_orders()")
    op.drop_table('order_totals')
