"""Driver-level executemany for the batch paths, with SQLAlchemy's own value conversions.

The dispatch and wake-up batches write and read thousands of rows a second (bench P1,
P3). Through ``Connection.execute(stmt, [dict, ...])`` SQLAlchemy builds a parameter
dictionary per row and walks it column by column; in those benches that bookkeeping cost
several times what SQLite itself spent on the rows. Here a statement is compiled once per
dialect into driver text with positional parameters, each parameter keeps the bind
processor SQLAlchemy would have used (so the stored text is the same: JSON, the SQLite
timestamp format), the processors run one column at a time, and the driver's
executemany runs on the session's own connection, inside its transaction. SQLAlchemy's
own executemany (the ORM's bulk INSERT and UPDATE by primary key, ``insertmanyvalues``
with RETURNING) keeps that per-row bookkeeping and was measured slower on the same
batches ("One persistence path" in docs/benchmarks.md), so these writers stay.

Reads work the same way in reverse: ``select_rows`` hands back plain tuples with each
column's result processor applied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert

from crm_journeys import jsontext
from crm_journeys.storage.models import UtcDateTime

Processor = Callable[[Any], Any] | None
_MEMO_SIZE = 1024  # a batch writes the same few timestamps over and over


@dataclass(frozen=True)
class Prepared:
    """A statement run with rows as dicts: its driver text and, per positional parameter,
    the name a row supplies it under (None: a constant compiled into the statement), its
    value processor and, for a constant, its processed value."""

    sql: str
    names: tuple[str | None, ...]
    processors: tuple[Processor, ...]
    constants: tuple[Any, ...]

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return _by_name(rows, self.names, self.processors, self.constants)


@dataclass(frozen=True)
class Positional:
    """A statement run with rows as tuples, one value per parameter in order."""

    sql: str
    processors: tuple[Processor, ...]

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        conn.exec_driver_sql(self.sql, _converted(self.processors, rows))


def execute_many(session: Session, stmt: ClauseElement, rows: Sequence[dict[str, Any]]) -> None:
    """Run ``stmt`` once per row (each a dict of its bind parameters) in one executemany."""
    if not rows:
        return
    conn = session.connection()
    prepared = _prepare(conn.dialect, stmt, frozenset(rows[0]))
    conn.exec_driver_sql(prepared.sql, prepared.parameters(rows))


def insert_rows(session: Session, table: Any, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows given as tuples of every column in the table's order (``Row.values()``)."""
    if rows:
        conn = session.connection()
        _insert_all(conn.dialect, table).run(conn, rows)


def update_rows(session: Session, table: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``UPDATE table SET <columns> WHERE id = ?`` per row, each row a tuple of the new
    values of ``columns`` followed by the row's id."""
    if rows:
        conn = session.connection()
        _update_by_id(conn.dialect, table, tuple(columns)).run(conn, rows)


def select_rows(session: Session, table: Any, where_column: str, values: Sequence[Any],
                *, chunk: int = 500) -> list[tuple[Any, ...]]:
    """Every column of the rows whose ``where_column`` is one of ``values`` (read in
    chunks), as tuples in the table's column order, converted as SQLAlchemy would."""
    conn = session.connection()
    dialect = conn.dialect
    processors = _result_processors(dialect, table)
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(values), chunk):
        part = list(values[start:start + chunk])
        sql = _select_sql(dialect, table, where_column, len(part))
        fetched = conn.exec_driver_sql(sql, tuple(part)).fetchall()
        out.extend(_converted(processors, fetched))
    return out


def _by_name(rows: Sequence[dict[str, Any]], names: Sequence[str | None], processors: Sequence[Processor],
             constants: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Dict rows as positional tuples of ``names`` (None: that position's constant),
    converted one column at a time."""
    consts = constants or (None,) * len(names)
    columns = [[const] * len(rows) if name is None else _apply(proc, map(itemgetter(name), rows))
               for name, proc, const in zip(names, processors, consts, strict=True)]
    return list(zip(*columns, strict=True))


def _converted(processors: Sequence[Processor], rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows with each column's processor applied, one column at a time."""
    if not rows:
        return []
    columns = [_apply(proc, col) for proc, col in zip(processors, zip(*rows, strict=True), strict=True)]
    return list(zip(*columns, strict=True))


def _apply(proc: Processor, values: Iterable[Any]) -> list[Any]:
    """One column's values through its processor (a whole column at once where it can)."""
    if proc is None:
        return list(values)
    if isinstance(proc, JsonText):
        return proc.column(values)
    return list(map(proc, values))


class JsonText:
    """JSON text for SQLite's JSON columns, one column at a time: a container many rows
    share (an action step's parameters, on every outbox row of that step) is written
    once, and empty ones without the encoder."""

    def __call__(self, value: Any) -> str:
        return jsontext.dumps(value)

    def column(self, values: Iterable[Any]) -> list[str]:
        out: list[str] = []
        memo: dict[int, str] = {}  # by identity: every value stays referenced by its row meanwhile
        for value in values:
            if not value and type(value) in _EMPTY_TEXT:
                out.append(_EMPTY_TEXT[type(value)])
                continue
            text = memo.get(id(value))
            if text is None:
                text = memo[id(value)] = jsontext.dumps(value)
            out.append(text)
        return out


_EMPTY_TEXT: dict[type, str] = {dict: "{}", list: "[]"}


def insert_ignoring_returning(target: Session | Connection, table: Any, rows: Sequence[dict[str, Any]],
                              conflict: Sequence[str], returning: Sequence[str], *,
                              chunk: int = 200) -> list[tuple[Any, ...]]:
    """``INSERT .. VALUES (..), (..) ON CONFLICT (conflict) DO NOTHING RETURNING ..`` in
    statements of up to ``chunk`` rows (each row a dict of the same columns): the
    ``returning`` columns of the rows that were new. RETURNING is what tells new from
    skipped on both databases (driver row counts disagree about skipped rows). On a
    session's or a plain connection's transaction."""
    if not rows:
        return []
    conn = target.connection() if isinstance(target, Session) else target
    columns = tuple(rows[0])
    processors = _column_processors(conn.dialect, table, columns)
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        flat = tuple(chain.from_iterable(_by_name(part, columns, processors)))
        sql = _insert_ignoring_sql(conn.dialect, table, columns, len(part), tuple(conflict), tuple(returning))
        out.extend(tuple(r) for r in conn.exec_driver_sql(sql, flat))
    return out


# --- statement preparation (cached) -----------------------------------------------------------
def _positional_dialect(dialect: Dialect) -> Dialect:
    """A compiler-only twin of ``dialect`` with positional parameters (psycopg's ``%s``)."""
    if dialect.positional:
        return dialect
    twin = _TWINS.get(type(dialect))
    if twin is None:
        twin = _TWINS[type(dialect)] = type(dialect)(paramstyle="format")  # type: ignore[call-arg]
    return twin


_TWINS: dict[type[Dialect], Dialect] = {}


@functools.lru_cache(maxsize=256)
def _prepare(dialect: Dialect, stmt: ClauseElement, supplied: frozenset[str]) -> Prepared:
    # an INSERT without .values() renders the columns the rows supply (as execute() would)
    keys = sorted(supplied) if isinstance(stmt, Insert) else None
    compiled: Any = stmt.compile(dialect=_positional_dialect(dialect), column_keys=keys)
    names: list[str | None] = []
    processors: list[Processor] = []
    constants: list[Any] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        proc = _bind_processor(dialect, bind.type)
        if name in supplied:
            names.append(name)
            processors.append(proc)
            constants.append(None)
        else:
            if bind.required:
                raise ValueError(f"no value for bind parameter {name!r} in {compiled.string!r}")
            value = bind.effective_value
            names.append(None)
            processors.append(None)
            constants.append(proc(value) if proc is not None else value)
    return Prepared(compiled.string, tuple(names), tuple(processors), tuple(constants))


@functools.lru_cache(maxsize=64)
def _insert_all(dialect: Dialect, table: Any) -> Positional:
    """INSERT of every column, parameters in the table's column order."""
    keys = [c.key for c in table.columns]
    compiled = insert(table).compile(dialect=_positional_dialect(dialect), column_keys=keys)
    if list(compiled.positiontup or ()) != keys:  # pragma: no cover - SQLAlchemy renders table order
        raise RuntimeError(f"unexpected parameter order for {table.name}: {compiled.positiontup}")
    return Positional(compiled.string, _column_processors(dialect, table, tuple(keys)))


@functools.lru_cache(maxsize=128)
def _update_by_id(dialect: Dialect, table: Any, columns: tuple[str, ...]) -> Positional:
    """UPDATE of ``columns`` by id, parameters in that order and the id last."""
    stmt = (update(table).where(table.c.id == bindparam("row_id"))
            .values({c: bindparam(f"v_{c}") for c in columns}))
    compiled: Any = stmt.compile(dialect=_positional_dialect(dialect))
    names = tuple(compiled.positiontup or ())
    if names != (*(f"v_{c}" for c in columns), "row_id"):  # pragma: no cover - SET before WHERE
        raise RuntimeError(f"unexpected parameter order for {table.name}: {names}")
    return Positional(compiled.string, (*_column_processors(dialect, table, columns), None))


@functools.lru_cache(maxsize=128)
def _column_processors(dialect: Dialect, table: Any, columns: tuple[str, ...]) -> tuple[Processor, ...]:
    return tuple(_bind_processor(dialect, table.c[c].type) for c in columns)


@functools.lru_cache(maxsize=64)
def _result_processors(dialect: Dialect, table: Any) -> tuple[Processor, ...]:
    return tuple(_result_processor(dialect, c.type) for c in table.columns)


def _bind_processor(dialect: Dialect, type_: Any) -> Processor:
    """SQLAlchemy's, except on SQLite: JSON text straight from ``jsontext`` (what the
    engine's ``json_serializer`` makes anyway, without two wrapper calls per value) and
    timestamps memoised (a batch writes the same few instants over and over)."""
    if dialect.name == "sqlite" and isinstance(type_, JSON):
        return _JSON_TEXT
    proc = type_.dialect_impl(dialect).bind_processor(dialect)
    if proc is not None and isinstance(type_, UtcDateTime):
        return functools.lru_cache(maxsize=_MEMO_SIZE)(proc)
    return proc


def _result_processor(dialect: Dialect, type_: Any) -> Processor:
    if dialect.name == "sqlite" and isinstance(type_, JSON):
        return jsontext.read_or_none
    return type_.dialect_impl(dialect).result_processor(dialect, None)


_JSON_TEXT = JsonText()


@functools.lru_cache(maxsize=1024)  # one per chunk length a batch happens to have
def _select_sql(dialect: Dialect, table: Any, where_column: str, n: int) -> str:
    stmt = select(*table.columns).where(table.c[where_column].in_([0] * n))
    compiled = stmt.compile(dialect=_positional_dialect(dialect),
                            compile_kwargs={"render_postcompile": True})
    return compiled.string


@functools.lru_cache(maxsize=1024)  # one per row count a batch happens to have
def _insert_ignoring_sql(dialect: Dialect, table: Any, columns: tuple[str, ...], n: int,
                         conflict: tuple[str, ...], returning: tuple[str, ...]) -> str:
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(columns)) + ")"
    return (f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES "
            + ", ".join([row] * n)
            + f" ON CONFLICT ({', '.join(map(quote, conflict))}) DO NOTHING"
            + f" RETURNING {', '.join(map(quote, returning))}")
