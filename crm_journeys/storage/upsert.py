"""INSERT ... ON CONFLICT DO NOTHING for SQLite and PostgreSQL: the idempotent write."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert


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
    stmt = insert_ignoring(session.get_bind().dialect.name, model.__table__, tuple(conflict_columns),
                           tuple(returning))
    return [tuple(r) for r in session.execute(stmt, execution_params(rows)).all()]


@functools.cache
def insert_ignoring(dialect: str, table: Any, conflict_columns: tuple[str, ...],
                    returning: tuple[str, ...]) -> Insert:
    """The statement, built once per dialect, table and columns: reusing the same object
    lets SQLAlchemy reuse its cache key and compiled form on hot paths (ingest, outbox)."""
    if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - other databases
        raise NotImplementedError(f"idempotent inserts need SQLite or PostgreSQL, not {dialect}")
    dml = postgresql if dialect == "postgresql" else sqlite
    return (dml.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(*(table.c[c] for c in returning)))


def execution_params(rows: list[dict[str, Any]]) -> Any:
    """One row as a single execution (an executemany of one costs more)."""
    return rows if len(rows) > 1 else rows[0]
