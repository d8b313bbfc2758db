"""Rows a batch writes itself, with one statement per table, instead of through the ORM.

Creating, tracking and flushing ORM objects cost more per event than the rules engine's
decision (bench P1, P3), and the batch already knows exactly which rows it made or read.
So new contacts, instances and wake-ups, and the instances and contacts a wake-up batch
reads, are plain objects with one slot per column (``Row``): code reads and sets their
attributes as it would on the mapped classes, and ``RowWriter`` inserts the new ones and
updates the changed ones with one executemany per table. Only dispatch and wake-up
batches use them; everything else keeps using the ORM. They stay, rather than ORM objects
written by the unit of work or the ORM's own bulk INSERT/UPDATE, because both were
measured slower on the same batches ("One persistence path" in docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from crm_journeys.storage import bulk
from crm_journeys.storage.models import Contact, Instance, Wakeup

INSERT_ORDER = (Contact, Instance, Wakeup)  # each refers only to tables before it


class Row:
    """A table row as a plain object: one slot per column, no change tracking."""

    __slots__ = ()
    model: ClassVar[Any]
    columns: ClassVar[tuple[str, ...]]
    snapshot: ClassVar[Any]  # attrgetter of every column: the values as one tuple

    def values(self) -> tuple[Any, ...]:
        return type(self).snapshot(self)


_CLASSES: dict[Any, type[Row]] = {}
_DEFAULTS: dict[Any, tuple[dict[str, Any], list[tuple[str, Any]]]] = {}


def row_class(model: Any) -> type[Row]:
    """The plain row class of a mapped model (``ContactRow`` for ``Contact``)."""
    cls = _CLASSES.get(model)
    if cls is None:
        # a dataclass for its generated __init__: one call fills every slot, positionally
        # (a loaded row) or by name (a new one), at a third of the cost of one setattr each
        columns = tuple(c.key for c in model.__table__.columns)
        cls = dataclasses.make_dataclass(
            f"{model.__name__}Row", columns, bases=(Row,), slots=True, eq=False,
            namespace={"model": model, "columns": columns, "snapshot": staticmethod(attrgetter(*columns))})
        _CLASSES[model] = cls
    return cls


def _defaults(model: Any) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Column defaults as the ORM would fill them: the constant ones, and the callable
    ones (``dict``, ``list``) that make a fresh container per row."""
    plan = _DEFAULTS.get(model)
    if plan is None:
        constant: dict[str, Any] = {}
        factories: list[tuple[str, Any]] = []
        for c in model.__table__.columns:
            if c.default is not None and c.default.is_callable:
                factories.append((c.key, c.default.arg))
            else:
                constant[c.key] = None if c.default is None else c.default.arg
        plan = _DEFAULTS[model] = (constant, factories)
    return plan


class RowWriter:
    """The rows one batch created or read, written back when the batch ends (or earlier,
    when an ORM flush in the middle of the batch may refer to them)."""

    def __init__(self, session: Session):
        self.session = session
        self._rows: dict[Any, dict[int, Any]] = {}  # every row the batch knows, by id
        self._new: dict[Any, list[Any]] = {}  # not inserted yet
        self._seen: dict[Any, dict[int, tuple[Any, ...]]] = {}  # values as read or inserted

    def create(self, model: Any, row_id: int, values: dict[str, Any]) -> Any:
        """A new row with the next id (handed out by the caller) and defaults filled in."""
        constant, factories = _defaults(model)
        fields = {**constant, **values, "id": row_id}
        for key, factory in factories:
            if key not in values:
                fields[key] = factory(None)
        obj = row_class(model)(**fields)
        self._rows.setdefault(model, {})[row_id] = obj
        self._new.setdefault(model, []).append(obj)
        return obj

    def load(self, model: Any, ids: list[int]) -> list[Any]:
        """Read these rows (those not known yet) with plain queries; they are written back
        at the end if they changed. Only for rows nothing else in the batch reads from the
        database (the ORM would see their old values): the wake-up path's instances and
        contacts."""
        known = self._rows.setdefault(model, {})
        seen = self._seen.setdefault(model, {})
        out: list[Any] = []
        cls = row_class(model)
        for values in bulk.select_rows(self.session, model.__table__, "id", sorted(set(ids) - set(known))):
            obj: Any = cls(*values)
            known[obj.id] = obj
            seen[obj.id] = values
            out.append(obj)
        return out

    def get(self, model: Any, row_id: int) -> Any | None:
        return self._rows.get(model, {}).get(row_id)

    @property
    def pending(self) -> bool:
        return bool(self._new)

    def insert_new(self) -> None:
        """Insert the new rows, referenced tables first; from now on they are tracked like
        read rows, so later changes become updates."""
        for model in INSERT_ORDER:
            objs = self._new.pop(model, None)
            if objs:
                bulk.insert_rows(self.session, model.__table__, [o.values() for o in objs])
                self._seen.setdefault(model, {}).update((o.id, o.values()) for o in objs)

    def write(self) -> None:
        """Insert what is new, then update what changed since it was read or inserted:
        only the changed columns, one executemany per set of changed columns (a wake-up
        batch's instances all change the same ones)."""
        self.insert_new()
        for model, seen in self._seen.items():
            rows = self._rows[model]
            snapshot = row_class(model).snapshot
            groups: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
            for row_id, before in seen.items():
                now = snapshot(rows[row_id])
                if now != before:
                    changed = tuple(i for i, (old, new) in enumerate(zip(before, now, strict=True)) if old != new)
                    groups.setdefault(changed, []).append((*(now[i] for i in changed), row_id))
            columns = row_class(model).columns
            for changed, params in groups.items():
                bulk.update_rows(self.session, model.__table__, tuple(columns[i] for i in changed), params)
        self._rows, self._seen = {}, {}
