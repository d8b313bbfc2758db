"""INSERT ... ON CONFLICT DO NOTHING for SQLite and PostgreSQL: the idempotent write."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, model: Any, rows: list[dict[str, Any]],
                              conflict_columns: list[str]) -> int:
    """Insert rows, skipping those that collide on ``conflict_columns``; returns how many
    were added, counted from RETURNING (driver rowcounts disagree on skipped rows)."""
    return len(insert_returning_new(session, model, rows, conflict_columns, ["id"]))


def insert_returning_new(session: Session, model: Any, rows: list[dict[str, Any]], conflict_columns: list[str],
                         returning: list[str]) -> list[tuple[Any, ...]]:
    """Insert rows, skipping those that collide on ``conflict_columns``; returns the
    ``returning`` columns of the rows that were added (one statement, RETURNING)."""
    if not rows:
        return []
    table = model.__table__
    dialect = session.get_bind().dialect.name
    params: Any = rows if len(rows) > 1 else rows[0]
    if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - other databases
        raise NotImplementedError(f"idempotent inserts need SQLite or PostgreSQL, not {dialect}")
    dml = postgresql if dialect == "postgresql" else sqlite
    stmt = (dml.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
            .returning(*(table.c[c] for c in returning)))
    return [tuple(r) for r in session.execute(stmt, params).all()]
