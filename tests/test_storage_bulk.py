"""The batch paths' driver-level writes and reads (``storage.bulk``) store exactly what
SQLAlchemy's own executemany stores and read back what its ORM reads, on SQLite and
PostgreSQL: JSON text, timestamps, booleans, NULLs, constants compiled into a statement,
and the new/skipped split of an idempotent insert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text, update

from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.storage import bulk
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, InboxEvent, OutboxMessage, Wakeup

NOW = datetime(2026, 3, 2, 9, 0, 0, 123_456, tzinfo=UTC)


def _tenant(db: Database) -> int:
    with db.unit_of_work() as s:
        return create_tenant(s, "bulk", "Bulk", NOW).id


def _contact(tenant_id: int, i: int, **extra: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "external_id": f"c{i}", "email": f"c{i}@example.com",
            "fields": {"name": f"Zoë {i}", "n": i, "nested": {"ok": True, "none": None}},
            "tags": ["vip", "é"], "groups": [], "segments": [], "activity": {},
            "version": None, "deleted": bool(i % 2), "updated_at": NOW + timedelta(seconds=i), **extra}


def _raw(db: Database, table: str, order: str = "id") -> list[tuple[Any, ...]]:
    with db.unit_of_work() as s:
        return [tuple(r) for r in s.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]  # noqa: S608


def test_insert_rows_stores_what_sqlalchemy_stores(database: Database) -> None:
    tenant_id = _tenant(database)
    contacts = [{"id": 100 + i, **_contact(tenant_id, i)} for i in range(3)]
    with database.unit_of_work() as s:
        s.execute(insert(Contact), contacts)
    reference = _raw(database, "cj_contact")
    with database.unit_of_work() as s:
        s.execute(text("DELETE FROM cj_contact"))
    columns = Contact.__table__.columns.keys()
    with database.unit_of_work() as s:
        bulk.insert_rows(s, Contact.__table__, [tuple(c[k] for k in columns) for c in contacts])
    assert len(reference) == 3 and _raw(database, "cj_contact") == reference


def test_select_rows_reads_what_the_orm_reads(database: Database) -> None:
    tenant_id = _tenant(database)
    with database.unit_of_work() as s:
        s.execute(insert(Contact), [_contact(tenant_id, i) for i in range(7)])
    with database.unit_of_work() as s:
        ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
        orm = {c.id: tuple(getattr(c, col.key) for col in Contact.__table__.columns)
               for c in s.scalars(select(Contact))}
        got = bulk.select_rows(s, Contact.__table__, "id", ids[1:] + [10 ** 9], chunk=2)
    assert sorted(got) == sorted(orm[i] for i in ids[1:])
    row = next(r for r in got if r[0] == ids[1])
    assert row[Contact.__table__.columns.keys().index("fields")]["nested"] == {"ok": True, "none": None}
    assert row[Contact.__table__.columns.keys().index("updated_at")].tzinfo is not None
    assert isinstance(row[Contact.__table__.columns.keys().index("deleted")], bool)


def test_execute_many_binds_per_row_values_and_compiled_constants(database: Database) -> None:
    """An UPDATE with a constant (``pending=False``), an expression (``attempts + 1``) and
    per-row values, as the batch's closing statements are written."""
    tenant_id = _tenant(database)
    with database.unit_of_work() as s:
        s.execute(insert(InboxEvent), [
            {"tenant_id": tenant_id, "dedup_key": f"k{i}", "type": "t", "payload": {"i": i},
             "occurred_at": NOW, "received_at": NOW, "attempts": i} for i in range(4)])
        ids = list(s.scalars(select(InboxEvent.id).order_by(InboxEvent.id)))
    done = (update(InboxEvent).where(InboxEvent.id == bindparam("eid"))
            .values(status="done", processed_at=bindparam("now"), attempts=InboxEvent.attempts + 1))
    later = NOW + timedelta(minutes=5)
    with database.unit_of_work() as s:
        bulk.execute_many(s, done, [{"eid": ids[0], "now": later}, {"eid": ids[2], "now": later}])
    with database.unit_of_work() as s:
        rows = {e.id: e for e in s.scalars(select(InboxEvent))}
        assert [(rows[i].status, rows[i].attempts, rows[i].processed_at) for i in ids] == [
            ("done", 1, later), ("pending", 1, None), ("done", 3, later), ("pending", 3, None)]


def test_execute_many_refuses_a_missing_value(database: Database) -> None:
    stmt = update(Wakeup).where(Wakeup.id == bindparam("wid")).values(lateness_ms=bindparam("late"))
    with database.unit_of_work() as s, pytest.raises(ValueError, match="late"):
        bulk.execute_many(s, stmt, [{"wid": 1}])


def test_insert_ignoring_returning_tells_new_rows_from_existing_keys(database: Database) -> None:
    tenant_id = _tenant(database)
    with database.unit_of_work() as s:
        contact_id = s.execute(insert(Contact).returning(Contact.id), _contact(tenant_id, 1)).scalar_one()

    def row(key: str) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "instance_id": None, "contact_id": contact_id, "step": "s",
                "idempotency_key": key, "action": "create_task", "params": {"subject": "Cześć"},
                "status": "pending", "attempts": 0, "next_attempt_at": NOW, "last_error": "",
                "result": {}, "created_at": NOW}

    key = ("tenant_id", "idempotency_key")
    with database.unit_of_work() as s:
        first = bulk.insert_ignoring_returning(s, OutboxMessage.__table__, [row("a"), row("b")], key, key)
    with database.unit_of_work() as s:
        second = bulk.insert_ignoring_returning(s, OutboxMessage.__table__,
                                                [row(k) for k in ("b", "c", "d", "a", "e")], key, key, chunk=2)
    assert sorted(first) == [(tenant_id, "a"), (tenant_id, "b")]
    assert sorted(second) == [(tenant_id, "c"), (tenant_id, "d"), (tenant_id, "e")]
    with database.unit_of_work() as s:
        stored = s.scalars(select(OutboxMessage).order_by(OutboxMessage.idempotency_key)).all()
        assert [m.idempotency_key for m in stored] == ["a", "b", "c", "d", "e"]
        assert stored[0].params == {"subject": "Cześć"} and stored[0].next_attempt_at == NOW


def test_json_columns_are_written_as_json_dumps_writes_them() -> None:
    """Shared containers are written once per column, empty ones without the encoder; the
    text is still exactly ``json.dumps``'s for every row."""
    shared = {"subject": "Grüße", "n": [1, 2.5, None, True]}
    values = [shared, {}, [], None, shared, {"a": {}}, [{}], "text", 0, False, shared]
    assert bulk.JsonText().column(values) == [json.dumps(v) for v in values]


def test_update_rows_sets_only_the_given_columns(database: Database) -> None:
    tenant_id = _tenant(database)
    with database.unit_of_work() as s:
        s.execute(insert(Contact), [{"id": 100 + i, **_contact(tenant_id, i)} for i in range(3)])
    later = NOW + timedelta(days=1)
    with database.unit_of_work() as s:
        bulk.update_rows(s, Contact.__table__, ("fields", "updated_at"),
                         [({"moved": "ünï"}, later, 100), ({}, later, 102)])
    with database.unit_of_work() as s:
        got = {c.id: (c.fields, c.updated_at, c.email) for c in s.scalars(select(Contact))}
    assert got == {100: ({"moved": "ünï"}, later, "c0@example.com"),
                   101: (_contact(tenant_id, 1)["fields"], NOW + timedelta(seconds=1), "c1@example.com"),
                   102: ({}, later, "c2@example.com")}
