"""INSERT ... ON CONFLICT DO NOTHING for SQLite and PostgreSQL: the idempotent write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, model: Any, rows: list[dict[str, Any]],
                              conflict_columns: list[str]) -> int:
    """Insert rows, skipping those that collide on ``conflict_columns``; returns how many
    were added, counted from RETURNING (driver rowcounts disagree on skipped rows)."""
    if not rows:
        return 0
    table = model.__table__
    dialect = session.get_bind().dialect.name
    params: Any = rows if len(rows) > 1 else rows[0]
    if dialect in ("postgresql", "sqlite"):
        dml = postgresql if dialect == "postgresql" else sqlite
        stmt = dml.insert(table).on_conflict_do_nothing(index_elements=conflict_columns).returning(table.c.id)
        return len(session.execute(stmt, params).all())
    result: Any = session.execute(insert(table), params)  # pragma: no cover - other databases
    return len(rows) if result.rowcount is None or result.rowcount < 0 else result.rowcount
