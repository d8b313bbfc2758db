"""The simpler persistence paths that "One persistence path" (docs/benchmarks.md) measured
against the batch's own writers; not used by the project.

Put this folder first on ``PYTHONPATH`` and choose with ``CJ_VARIANT`` (worker processes
that a figure starts inherit both):

- ``sa``: ``storage/bulk.py``'s writers replaced by SQLAlchemy's own executemany: the
  ORM's bulk INSERT and UPDATE by primary key, Core executemany for UPDATE .. WHERE,
  ``insertmanyvalues`` with RETURNING for ON CONFLICT DO NOTHING, a plain select for reads.
  ``rows.RowWriter`` and ``ids.IdSource`` stay.
- ``orm``: as ``sa``, and ``rows.RowWriter`` replaced by ORM objects (``session.add``, the
  unit of work's flush); ids still from ``IdSource``.

``CJ_VARIANT=sa PYTHONPATH=bench/variants python -m bench --only P1 --no-write``
"""

from __future__ import annotations

import os
import types
from typing import Any

_VARIANT = os.environ.get("CJ_VARIANT", "")


def _install_sa() -> None:
    from sqlalchemy import insert, select, update
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    from sqlalchemy.sql.dml import Insert

    from crm_journeys.runtime import batch, rows
    from crm_journeys.storage.models import Base

    models = {m.class_.__table__: m.class_ for m in Base.registry.mappers}

    def execute_many(session: Any, stmt: Any, params: list[dict[str, Any]]) -> None:
        if not params:
            return
        if isinstance(stmt, Insert):
            session.execute(insert(models[stmt.table]), list(params))
        else:  # UPDATE .. WHERE on bound parameters: Core executemany (the ORM refuses it)
            session.connection().execute(stmt, list(params))

    def insert_rows(session: Any, table: Any, values: list[tuple[Any, ...]]) -> None:
        if values:
            keys = [c.key for c in table.columns]
            session.execute(insert(models[table]), [dict(zip(keys, v, strict=True)) for v in values])

    def update_rows(session: Any, table: Any, columns: tuple[str, ...], values: list[tuple[Any, ...]]) -> None:
        if values:
            keys = (*columns, "id")
            session.execute(update(models[table]), [dict(zip(keys, v, strict=True)) for v in values])

    def select_rows(session: Any, table: Any, where_column: str, values: list[Any], *,
                    chunk: int = 500) -> list[tuple[Any, ...]]:
        conn = session.connection()
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(values), chunk):
            part = list(values[start:start + chunk])
            out.extend(tuple(r) for r in conn.execute(select(*table.columns).where(table.c[where_column].in_(part))))
        return out

    def insert_ignoring_returning(session: Any, table: Any, params: list[dict[str, Any]], conflict: tuple[str, ...],
                                  returning: tuple[str, ...], *, chunk: int = 200) -> list[tuple[Any, ...]]:
        if not params:
            return []
        model = models[table]
        dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = (dialect_insert(model).on_conflict_do_nothing(index_elements=list(conflict))
                .returning(*(getattr(model, c) for c in returning)))
        return [tuple(r) for r in session.execute(stmt, list(params))]

    writers = types.SimpleNamespace(execute_many=execute_many, insert_rows=insert_rows, update_rows=update_rows,
                                    select_rows=select_rows, insert_ignoring_returning=insert_ignoring_returning)
    batch.bulk = writers
    rows.bulk = writers


class OrmRows:
    """``rows.RowWriter``'s interface on ORM objects: the unit of work writes them."""

    pending = False  # the unit of work orders its own inserts

    def __init__(self, session: Any):
        self.session = session
        self._rows: dict[Any, dict[int, Any]] = {}

    def create(self, model: Any, row_id: int, values: dict[str, Any]) -> Any:
        obj = model(**values, id=row_id)
        self.session.add(obj)
        self._rows.setdefault(model, {})[row_id] = obj
        return obj

    def load(self, model: Any, ids: list[int]) -> list[Any]:
        from sqlalchemy import select

        known = self._rows.setdefault(model, {})
        wanted = sorted(set(ids) - set(known))
        out = []
        for start in range(0, len(wanted), 500):
            for obj in self.session.scalars(select(model).where(model.id.in_(wanted[start:start + 500]))):
                known[obj.id] = obj
                out.append(obj)
        return out

    def get(self, model: Any, row_id: int) -> Any | None:
        return self._rows.get(model, {}).get(row_id)

    def insert_new(self) -> None:
        self.session.flush()

    def write(self) -> None:
        self.session.flush()
        self._rows = {}


if _VARIANT in ("sa", "orm"):
    _install_sa()
if _VARIANT == "orm":
    from crm_journeys.runtime import batch as _batch

    _batch.RowWriter = OrmRows
