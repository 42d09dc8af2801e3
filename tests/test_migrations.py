"""The migrations build exactly the schema the models describe, so a model change without its migration fails."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from salad.core import models  # noqa: F401  (registers the tables)
from salad.core.db import make_engine, sqlalchemy_url
from salad.core.migrate import upgrade
from sqlalchemy import text
from sqlmodel import SQLModel

from tests.postgres import create_database


def test_the_migrated_postgresql_schema_matches_the_models(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_tasks_queued_before_the_hand_out_plan_keep_longest_first(postgres_admin_url):
    url = create_database(postgres_admin_url, "before_hand_out_rank")
    upgrade(url, "0003")
    engine = make_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as conn:
            rows = [(1, 1, 5, "queued"), (2, 1, 9, "queued"), (3, 1, 7, "queued"), (4, 1, 20, "succeeded"),
                    (5, 2, 3, "queued")]
            for task_id, order_id, seconds, status in rows:
                conn.execute(text(
                    "INSERT INTO tasks (id, order_id, position, fruit, execution_time, priority, status, attempts,"
                    " max_attempts, created_at, queued_at) VALUES (:id, :order_id, :id, 'kiwi', :seconds, 0,"
                    " :status, 0, 3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    dict(id=task_id, order_id=order_id, seconds=seconds, status=status))
        upgrade(url)
        with engine.connect() as conn:
            ranks = dict(conn.execute(text("SELECT id, hand_out_rank FROM tasks")).all())
    finally:
        engine.dispose()

    assert ranks == {2: 0, 3: 1, 1: 2, 4: 0, 5: 0}, "queued ones ranked longest first within their order"
