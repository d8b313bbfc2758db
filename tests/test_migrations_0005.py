"""Migration 0005 on real databases: the partial index over failing outbox rows is built as
the models declare it (concurrently on PostgreSQL, again after a build that failed halfway),
goes away on downgrade, and the action-errors queries read it on both planners."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, event, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex

from crm_journeys.runtime import action_errors as errors
from crm_journeys.storage.db import Database
from crm_journeys.storage.migrate import downgrade, upgrade
from crm_journeys.storage.models import Contact, OutboxMessage, Tenant
from tests.conftest import START, _backends, empty_database

INDEX = "ix_cj_outbox_failing"
ROWS = 3000  # per tenant; enough that PostgreSQL prefers the index to reading the table
KINDS = [("dead", 3), ("pending", 2), ("dismissed", 5), ("pending", 0), ("pending", 0)]  # then done


@pytest.fixture(params=_backends())
def at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with empty_database(request.param, tmp_path) as db:
        upgrade(db.engine, "0004")
        yield db


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SQL sent to the database inside the block and its parameters, as the driver got them."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((" ".join(statement.split()), parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)


def _definition(conn: Connection, name: str) -> str | None:
    if conn.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    found = conn.execute(text(query), {"name": name}).scalar()
    return None if found is None else str(found).replace(name, "<index>")


def _declared(conn: Connection) -> str | None:
    """The definition the database gives the index as the models declare it."""
    [index] = [i for i in OutboxMessage.__table__.indexes if i.name == INDEX]
    conn.execute(text(str(CreateIndex(index).compile(conn)).replace(INDEX, "ix_declared")))
    try:
        return _definition(conn, "ix_declared")
    finally:
        conn.execute(text("DROP INDEX ix_declared"))


def _valid(conn: Connection) -> bool:
    if conn.dialect.name == "sqlite":
        return True
    return bool(conn.execute(text("SELECT indisvalid FROM pg_index WHERE indexrelid = CAST(:n AS regclass)"),
                             {"n": INDEX}).scalar())


def test_upgrade_builds_the_declared_index_and_downgrade_drops_it(at_0004: Database) -> None:
    with statements(at_0004) as sent:
        upgrade(at_0004.engine)
    assert _concurrently(at_0004, sent, "CREATE INDEX")
    with at_0004.engine.begin() as conn:
        assert _definition(conn, INDEX) == _declared(conn) and _valid(conn)

    with statements(at_0004) as sent:
        downgrade(at_0004.engine, "0004")
    assert _concurrently(at_0004, sent, "DROP INDEX")
    with at_0004.engine.begin() as conn:
        assert _definition(conn, INDEX) is None
    upgrade(at_0004.engine)
    with at_0004.engine.begin() as conn:
        assert _definition(conn, INDEX) == _declared(conn)


def _concurrently(db: Database, sent: list[tuple[str, Any]], verb: str) -> bool:
    """Whether the index was created (dropped) and, on PostgreSQL only, every time concurrently."""
    found = [s for s, _ in sent if s.startswith(verb) and INDEX in s]
    return bool(found) and all(("CONCURRENTLY" in s) == db.is_postgres for s in found)


def test_an_index_left_invalid_by_a_failed_concurrent_build_is_built_again(at_0004: Database) -> None:
    if at_0004.is_sqlite:
        pytest.skip("SQLite builds the index in the migration's transaction")
    _outbox(at_0004, rows=2)
    with pytest.raises(IntegrityError), \
            at_0004.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON cj_outbox ((1))"))
    with at_0004.engine.begin() as conn:
        assert _definition(conn, INDEX) is not None and not _valid(conn)
    upgrade(at_0004.engine)
    with at_0004.engine.begin() as conn:
        assert _definition(conn, INDEX) == _declared(conn) and _valid(conn)


def _outbox(db: Database, rows: int) -> int:
    """Two tenants with ``rows`` outbox rows each, one in 100 of each kind in ``KINDS`` and
    the rest done; returns the first tenant's id."""
    with db.engine.begin() as conn:
        tenants = [conn.execute(insert(Tenant).values(slug=slug, name=slug, created_at=START)
                                .returning(Tenant.id)).scalar_one() for slug in ("acme", "globex")]
        for tenant in tenants:
            contact = conn.execute(insert(Contact).values(tenant_id=tenant, external_id="c", updated_at=START)
                                   .returning(Contact.id)).scalar_one()
            conn.execute(insert(OutboxMessage), [
                {"tenant_id": tenant, "contact_id": contact, "idempotency_key": f"k{i}",
                 "action": ("add_tag", "create_lead")[i % 2], "status": status, "attempts": attempts,
                 "next_attempt_at": START, "created_at": START}
                for i in range(rows)
                for status, attempts in [KINDS[i % 100] if i % 100 < len(KINDS) else ("done", 1)]])
        conn.execute(text("ANALYZE" if db.is_sqlite else "ANALYZE cj_outbox"))
    return tenants[0]


F = errors.ErrorFilter
QUERIES: dict[str, tuple[Callable[[Any, int], Any], Any]] = {  # what each reads, and its answer
    "list": (lambda s, t: [r.status for r in errors.list_errors(s, t, F(), limit=4)],
             ["retrying", "dead", "retrying", "dead"]),
    "list dead": (lambda s, t: {r.status for r in errors.list_errors(s, t, F("dead"), limit=50)}, {"dead"}),
    "list retrying": (lambda s, t: {r.attempts for r in errors.list_errors(s, t, F("retrying"), limit=50)}, {2}),
    "count": (lambda s, t: errors.count_errors(s, t, F()), 2 * ROWS // 100),
    "count dead": (lambda s, t: errors.count_errors(s, t, F("dead")), ROWS // 100),
    "count retrying": (lambda s, t: errors.count_errors(s, t, F("retrying")), ROWS // 100),
    "count one action": (lambda s, t: errors.count_errors(s, t, F(action="add_tag")), ROWS // 100),
    "nav badge": (lambda s, t: errors.dead_count(s, t), ROWS // 100),
    "filter choices": (lambda s, t: errors.actions_in_use(s, t), ["add_tag", "create_lead"]),
}


@pytest.mark.parametrize("name", QUERIES)
def test_the_action_errors_queries_read_the_failing_index(database: Database, name: str) -> None:
    tenant = _outbox(database, ROWS)
    query, answer = QUERIES[name]
    with database.unit_of_work() as s, statements(database) as sent:
        assert query(s, tenant) == answer
    [(sql, parameters)] = [(s, p) for s, p in sent if s.startswith("SELECT")]
    with database.engine.connect() as conn:
        for plan in _plans(conn, sql, parameters):
            assert INDEX in plan, plan


def _plans(conn: Connection, sql: str, parameters: Any) -> list[str]:
    """The plans of a statement: SQLite's; on PostgreSQL the one for these values and the
    generic one, which sees no bound value: psycopg prepares a statement on its fifth run,
    and PostgreSQL may then plan it once for every value."""
    def plan(explained: str) -> str:
        return "\n".join(str(row[-1]) for row in conn.exec_driver_sql(explained, parameters))

    if conn.dialect.name == "sqlite":
        return [plan("EXPLAIN QUERY PLAN " + sql)]
    names = list(parameters)
    with psycopg.ClientCursor(conn.connection.dbapi_connection) as cursor:  # values inline: $1 means q's own
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute("PREPARE q AS " + re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", sql))
        cursor.execute(f"EXPLAIN EXECUTE q({', '.join(f'%({n})s' for n in names)})", parameters)
        generic = "\n".join(row[0] for row in cursor.fetchall())
    return [plan("EXPLAIN " + sql), generic]
