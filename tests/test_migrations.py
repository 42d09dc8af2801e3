"""The migrations build exactly the schema the models describe, so a model change without its migration fails."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from salad.core import models  # noqa: F401  (registers the tables)
from salad.core.db import make_engine, sqlalchemy_url
from sqlmodel import SQLModel


def test_the_migrated_postgresql_schema_matches_the_models(postgres_url):
    engine = make_engine(sqlalchemy_url(postgres_url))
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    finally:
        engine.dispose()
