"""UTC timestamps on SQLite: the shortcut codec writes exactly the text SQLAlchemy's
DATETIME writes (so rows written before and after it compare and sort alike) and reads
back aware UTC datetimes, including text other writers left (no microseconds, date only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import DateTime, create_engine, text
from sqlalchemy.dialects import sqlite

from crm_journeys.storage.models import UtcDateTime

VALUES = [datetime(2026, 3, 2, 9, 0, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
          datetime(1, 1, 1, tzinfo=UTC), datetime(2026, 3, 2, 9, 0, 0, 7, tzinfo=UTC)]


def _processors() -> tuple:
    dialect = sqlite.dialect()
    ours = UtcDateTime()
    return (ours._cached_bind_processor(dialect), ours._cached_result_processor(dialect, None),
            DateTime(timezone=True)._cached_bind_processor(dialect))


@pytest.mark.parametrize("value", VALUES)
def test_written_text_is_sqlalchemys_and_reads_back_the_same_instant(value: datetime) -> None:
    bind, result, reference = _processors()
    assert bind(value) == reference(value)
    assert result(bind(value)) == value and result(bind(value)).tzinfo is UTC


def test_text_from_other_writers_reads_as_utc() -> None:
    _, result, _ = _processors()
    assert result("2026-03-05 09:00:00") == datetime(2026, 3, 5, 9, tzinfo=UTC)
    assert result("2026-03-05") == datetime(2026, 3, 5, tzinfo=UTC)
    assert result(None) is None


def test_naive_datetimes_are_refused() -> None:
    bind, _, _ = _processors()
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2026, 3, 2, 9, 0))


def test_order_in_the_database_is_time_order(tmp_path) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table, insert, select

    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"at": v} for v in VALUES])
        conn.execute(text("INSERT INTO t (at) VALUES ('2026-03-02 09:00:00.000001')"))  # written elsewhere
        got = list(conn.execute(select(table.c.at).order_by(table.c.at)).scalars())
    assert got == sorted([*VALUES, datetime(2026, 3, 2, 9, 0, 0, 1, tzinfo=UTC)])


def test_text_with_its_own_offset_keeps_it() -> None:
    _, result, _ = _processors()
    assert result("2026-03-05 09:00:00+02:00") == datetime(2026, 3, 5, 7, tzinfo=UTC)
    assert result("2026-03-05T09:00:00Z") == datetime(2026, 3, 5, 9, tzinfo=UTC)
    assert result("2026-03-05 09:00").tzinfo is not None
