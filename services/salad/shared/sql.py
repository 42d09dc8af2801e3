"""Shared's named statements: shared/queries.sql, loaded once (`SQL.insert_order`, `SQL.intake_claim`, ...)."""

from salad.core.queries import load

SQL = load(__package__)
