"""Primary keys for a batch's new rows, handed out without a flush.

The batch writes its new contacts, instances and wake-ups itself, one executemany per
table (``rows.RowWriter``), so it needs their ids before anything is inserted; asking the
database for each id (an ORM flush per row) cost more than the rest of the event on
PostgreSQL. ``INSERT .. RETURNING`` hands ids back only once rows are written, and a
decision needs its new instance's id at once (its outbox rows, wake-ups, logs and
idempotency keys refer to it), so ids from RETURNING would again mean a flush per new row
("One persistence path" in docs/benchmarks.md).

- SQLite: the batch's transaction holds the only write lock (BEGIN IMMEDIATE), so the ids
  are simply max(id) + 1 and counting on, as SQLite itself would pick them.
- PostgreSQL: ids come from the table's own sequence, a block per round trip
  (``nextval`` over ``generate_series``). Concurrent workers get disjoint ids, and a block
  drawn later only holds larger ids than any drawn before it, which keeps a contact's rows
  in creation order across workers: a batch only draws after it has locked its contacts,
  so every row another worker made for them came from an earlier draw. Ids of a block
  left unused when the batch ends are skipped, as a rolled-back ``nextval`` would be.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

_DRAW = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


class IdSource:
    """The ids one batch hands out, per table; ``block`` is how many a PostgreSQL draw takes."""

    def __init__(self, session: Session, block: int):
        self.session = session
        self.block = block
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        self._free: dict[Any, deque[int]] = {}
        self._last: dict[Any, int] = {}  # SQLite: the last id handed out
        self._first: dict[Any, int] = {}

    def next(self, model: Any) -> int:
        new = self._next_sqlite(model) if self.sqlite else self._next_drawn(model)
        self._first.setdefault(model, new)
        return new

    def first(self, model: Any) -> int | None:
        """The lowest id handed out for ``model`` in this batch (None when none was): every
        row of that table that existed before the batch has a lower one."""
        return self._first.get(model)

    def _next_sqlite(self, model: Any) -> int:
        last = self._last.get(model)
        if last is None:
            with self.session.no_autoflush:
                last = self.session.scalar(select(func.max(model.id))) or 0
        self._last[model] = last + 1
        return last + 1

    def _next_drawn(self, model: Any) -> int:
        free = self._free.get(model)
        if not free:
            drawn = self.session.connection().execute(_DRAW, {"table": model.__tablename__, "n": self.block}).scalars()
            free = self._free[model] = deque(sorted(drawn))
        return free.popleft()
