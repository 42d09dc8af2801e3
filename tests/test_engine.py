"""The database engine on PostgreSQL: settings given for every connection stay set across transactions."""

from salad.core.db import make_engine, sqlalchemy_url, transaction
from salad.master.tasks import PLANNER


def test_planner_settings_hold_on_every_pooled_connection_after_rollbacks(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url), pool_size=2, planner=PLANNER)
    try:
        seen = []
        for _ in range(3):
            with engine.connect() as first, engine.connect() as second:  # two connections of the pool
                for connection in (first, second):
                    seen.append(connection.exec_driver_sql("SHOW enable_bitmapscan").scalar())
                    connection.rollback()  # as the pool does when a connection is returned
        with transaction(engine) as session:
            seen.append(session.connection().exec_driver_sql("SHOW enable_bitmapscan").scalar())
    finally:
        engine.dispose()
    assert seen == ["off"] * 7
