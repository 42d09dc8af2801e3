"""order_totals counted once per statement, inside it, not once per order at the commit

Migration 0007's trigger ran for each order that finished, deferred to the commit: a report batch of twenty
completions updated the one totals row twenty times, and even a one-order report cost PostgreSQL a statement
of its own at the commit. A statement-level trigger reads the rows the statement changed (its transition
tables) and updates the row once, only when a count changed, before the statement ends.

Still no deadlock: every statement that changes an order's status (Shared's accept and its report statement)
is a transaction of its own, so the totals row is still the last row it locks, held only until its commit.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 19:00:00
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

FINISHED = "('completed', 'failed')"


def upgrade() -> None:
    op.execute("DROP TRIGGER count_finished_orders ON orders")
    op.execute("""
        CREATE OR REPLACE FUNCTION count_finished_orders() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            completed_change bigint;
            failed_change bigint;
        BEGIN
            SELECT coalesce(sum((n.status = 'completed')::int - (o.status = 'completed')::int), 0),
                   coalesce(sum((n.status = 'failed')::int - (o.status = 'failed')::int), 0)
            INTO completed_change, failed_change
            FROM old_orders o JOIN new_orders n ON n.id = o.id
            WHERE o.status IS DISTINCT FROM n.status;
            IF completed_change <> 0 OR failed_change <> 0 THEN
                UPDATE order_totals
                SET completed = completed + completed_change, failed = failed + failed_change
                WHERE id = 1;
            END IF;
            RETURN NULL;
        END
        $$""")
    # Transition tables cannot go with a column list (UPDATE OF status): the function skips the rest.
    op.execute("""
        CREATE TRIGGER count_finished_orders AFTER UPDATE ON orders
        REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
        FOR EACH STATEMENT EXECUTE FUNCTION count_finished_orders()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER count_finished_orders ON orders")
    op.execute("""
        CREATE OR REPLACE FUNCTION count_finished_orders() RETURNS trigger LANGUAGE plpgsql AS $$
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
