"""Alembic environment: the URL comes from `salad migrate` (SALAD_DATABASE_URL), the schema from the models."""

from alembic import context
from sqlmodel import SQLModel

import salad.core.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from salad.core.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
