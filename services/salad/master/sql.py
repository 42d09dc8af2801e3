"""Master's named statements: master/queries.sql, loaded once (`SQL.split`, `SQL.exchange`, ...)."""

from salad.core.queries import load

SQL = load(__package__)
