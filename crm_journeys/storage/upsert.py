"""INSERT ... ON CONFLICT DO NOTHING for SQLite and PostgreSQL: the idempotent write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, model: Any, rows: list[dict[str, Any]],
                              conflict_columns: list[str]) -> int:
    """Insert rows, skipping those that collide on ``conflict_columns``; returns rows added
    (exact for a single row, a best effort for many)."""
    if not rows:
        return 0
    table = model.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
    else:  # pragma: no cover
        stmt = insert(table)
    result = session.execute(stmt, rows if len(rows) > 1 else rows[0])
    count = result.rowcount
    return len(rows) if count is None or count < 0 else count
