"""Master's named statements: master/queries.sql, loaded once (`SQL.claim`, `SQL.exchange`, ...)."""

from salad.core.queries import load

SQL = load(__package__)
