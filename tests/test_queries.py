"""The named SQL files: the loader's format, a description for every statement, and every statement accepted
by PostgreSQL as written (prepared against the migrated schema, so a typo on a rare path fails here)."""

import re
from importlib import resources

import psycopg
import pytest
from salad.core.db import ORDERS_CHANNEL, TASKS_CHANNEL
from salad.core.queries import QueryFileError, load, parse, statements
from salad.master.sql import SQL
from sqlalchemy.dialects import postgresql

PACKAGES = ["salad.master", "salad.shared"]
NUMBERED = postgresql.dialect(paramstyle="numeric_dollar")  # :name -> $1, as PREPARE takes them


def source(package: str) -> str:
    return resources.files(package).joinpath("queries.sql").read_text()


def test_blocks_are_read_by_name_without_comments_and_final_semicolon():
    parsed = parse("-- the file's own comment\n\n-- name: one\n-- what it does\nSELECT 1\n  -- a step\n  + :x;\n"
                   "-- name: two\nSELECT 2;\n")
    assert parsed == {"one": "SELECT 1\n  + :x", "two": "SELECT 2"}


@pytest.mark.parametrize("text, problem", [
    ("SELECT 1;\n-- name: one\nSELECT 1;", "before the first"),
    ("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;", "used twice"),
    ("-- name: one\n-- nothing follows\n", "is empty"),
])
def test_malformed_files_are_refused(text, problem):
    with pytest.raises(QueryFileError, match=problem):
        parse(text)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_statement_says_what_it_does(package):
    lines = source(package).splitlines()
    for number, line in enumerate(lines):
        if line.startswith("-- name:"):
            following = lines[number + 1]
            assert following.startswith("-- ") and len(following) > 10, f"{line}: no description under it"


def test_the_notifications_use_the_channels_the_listeners_listen_on():
    sql = "\n".join(source(package) for package in PACKAGES)
    assert set(re.findall(r"pg_notify\('(\w+)'", sql)) <= {TASKS_CHANNEL, ORDERS_CHANNEL}
    assert f"pg_notify('{TASKS_CHANNEL}'" in load("salad.master").split.text
    assert f"pg_notify('{ORDERS_CHANNEL}'" in load("salad.shared").insert_order.text


@pytest.mark.parametrize("package", PACKAGES)
def test_postgresql_prepares_every_statement(package, postgres_url):
    with psycopg.connect(postgres_url) as conn:
        for name, statement in statements(load(package)).items():
            try:
                conn.execute(f"PREPARE q AS {statement.compile(dialect=NUMBERED)}")
                conn.execute("DEALLOCATE q")
            except psycopg.Error as exc:
                pytest.fail(f"{package} {name}: {exc}")


def test_results_and_claims_read_tasks_by_primary_key_whatever_the_table_holds(postgres_url):
    """A generic plan (what a prepared statement runs after five calls) does not know how many tasks an
    exchange claims or records; it must still find them by primary key, not read the table each time."""
    numbered = SQL.exchange.compile(dialect=NUMBERED)
    values = {"now": "2026-01-01T00:00:00+00:00", "reports_due_at": "2026-01-01T00:00:15+00:00",
              "max_tasks": 64, "batch": '[{"id": 1, "lease_id": "l"}]',
              "takers": '[{"lease": "l", "worker_name": "w", "expires": "2026-01-01T00:01:00+00:00",'
                        ' "first": 0, "max_tasks": 64}]'}
    with psycopg.connect(postgres_url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("INSERT INTO salads (order_id, total, remaining, status, ordered_at, version, seed_collected)"
                     " SELECT g, 100, 100, 'in_progress', now(), 0, false FROM generate_series(1, 100) g")
        conn.execute("INSERT INTO tasks (order_id, position, fruit, execution_time, priority, hand_out_rank,"
                     " status, attempts, max_attempts, created_at, queued_at)"
                     " SELECT o, p, 'kiwi', 1, 0, p, CASE WHEN o <= 50 THEN 'running' ELSE 'queued' END, 0, 3,"
                     " now(), now() FROM generate_series(1, 100) o, generate_series(0, 99) p")
        conn.execute("ANALYZE tasks")
        conn.execute("SET enable_bitmapscan = off")  # as Master's connections (tasks.PLANNER)
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE statement AS {numbered}")
        args = ", ".join(["%s"] * len(numbered.positiontup))
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE statement({args})",
                            [values[name] for name in numbered.positiontup]).fetchone()[0]

    def scans(node: dict):
        yield node
        for child in node.get("Plans", []):
            yield from scans(child)

    whole_table = [n for n in scans(plan[0]["Plan"])
                   if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "tasks"]
    assert whole_table == []
