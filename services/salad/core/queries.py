"""Named SQL: each service keeps its hot statements in a `queries.sql` file beside its code, read here.

A file holds blocks, each opened by a `-- name: <identifier>` line and followed by comment lines that say
what the statement does; comments inside a statement explain its steps. Parameters are written `:name`, as
SQLAlchemy's `text()` binds them (psycopg receives them as `%(name)s`), so a block pasted into psql needs
only its parameters replaced (or `\\set name value` and `:'name'`).

Comment lines are dropped from what is sent to PostgreSQL: the statement stays short on the wire and in
`pg_stat_statements`, and equal across runs, so psycopg prepares it once per connection.
"""

import re
from importlib import resources
from types import SimpleNamespace

from sqlalchemy import TextClause, text

NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")


class QueryFileError(ValueError):
    """A queries file is malformed: a statement without a name, a name used twice, an empty statement."""


def parse(source: str, where: str = "<queries>") -> dict[str, str]:
    """The statements of a queries file by name, without their comment lines and final semicolon."""
    statements: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(source.splitlines(), 1):
        if match := NAME.match(line.strip()):
            name = match.group(1)
            if name in statements:
                raise QueryFileError(f"{where}:{number}: the name {name!r} is used twice")
            current = statements[name] = []
        elif line.strip().startswith("--") or not line.strip():
            continue
        elif current is None:
            raise QueryFileError(f"{where}:{number}: SQL before the first `-- name:` line")
        else:
            current.append(line.rstrip())
    parsed = {}
    for name, lines in statements.items():
        sql = "\n".join(lines).strip().removesuffix(";").rstrip()
        if not sql:
            raise QueryFileError(f"{where}: the query {name!r} is empty")
        parsed[name] = sql
    return parsed


def load(package: str, filename: str = "queries.sql") -> SimpleNamespace:
    """The named statements of `package`'s queries file, as SQLAlchemy `text()` clauses: `SQL.split`."""
    source = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return SimpleNamespace(**{name: text(sql) for name, sql in parse(source, f"{package}/{filename}").items()})


def statements(queries: SimpleNamespace) -> dict[str, TextClause]:
    """Every statement of a loaded file, by name (for tests and tools)."""
    return dict(vars(queries))
