"""INSERT ... ON CONFLICT DO NOTHING through an ORM session: the idempotent write."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from crm_journeys.storage import bulk


def insert_ignoring_conflicts(session: Session, model: Any, rows: list[dict[str, Any]],
                              conflict_columns: list[str]) -> int:
    """Insert rows (dicts of the same columns), skipping those that collide on
    ``conflict_columns``; returns how many were added, counted from RETURNING (driver
    rowcounts disagree on skipped rows). The session's pending objects are flushed first,
    as a query through it would."""
    session.flush()
    columns = tuple(conflict_columns)
    return len(bulk.insert_ignoring_returning(session, model.__table__, rows, columns, columns))
