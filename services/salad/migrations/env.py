"""Alembic environment: `salad.core.migrate.upgrade` hands over its connection, which holds the migration
lock; the schema comes from the models."""

from alembic import context
from sqlmodel import SQLModel

import salad.core.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
