"""Shared fixtures: a real database (SQLite file, or PostgreSQL when configured), a virtual
clock, and a harness that drives the real runtime the way the worker does."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from crm_journeys.clock import VirtualClock
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.runtime.worker import Worker, advance_to
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Instance, OutboxMessage, SandboxRecord, StepLog

pytest_plugins = ["tests.web_fixtures", "tests.bottlecrm_host", "tests.bottlecrm_people"]

PG_ENV = "CRM_JOURNEYS_TEST_DATABASE_URL"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def _backends() -> list[Any]:
    params: list[Any] = ["sqlite"]
    marks = [] if os.environ.get(PG_ENV) else [pytest.mark.skip(reason=f"{PG_ENV} not set")]
    params.append(pytest.param("postgresql", marks=[pytest.mark.postgres, *marks]))
    return params


def _fresh_postgres(base_url: str) -> tuple[str, Any]:
    """A throw-away database per test on the real server, dropped afterwards."""
    name = f"cj_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base_url.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A Database on a new SQLite file or a new PostgreSQL database (dropped afterwards),
    with no schema yet: the caller upgrades it as far as it needs."""
    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url, drop = _fresh_postgres(os.environ[PG_ENV])
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()
        if drop:
            drop()


@pytest.fixture(params=_backends())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with empty_database(request.param, tmp_path) as db:
        db.upgrade()
        yield db


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'test.db'}")
    db.upgrade()
    yield db
    db.dispose()


class Harness:
    """Drives the real runtime on a virtual clock and reads back what happened."""

    def __init__(self, db: Database, clock: VirtualClock):
        self.db = db
        self.clock = clock
        self.runtime = Runtime(db=db, clock=clock)
        self.worker = Worker(self.runtime)
        self._sandbox_ids: dict[str, str] = {}
        with db.unit_of_work() as s:
            self.tenant_id = create_tenant(s, f"t-{uuid.uuid4().hex[:8]}", "Test tenant", clock.now()).id

    # --- setting up ---------------------------------------------------------------------
    def publish(self, document: dict[str, Any] | str) -> int:
        if isinstance(document, str):
            document = json.loads((EXAMPLES / document).read_text())
        with self.db.unit_of_work() as s:
            journey = create_journey(s, self.tenant_id, document, self.clock.now())
            from crm_journeys.actions.registry import installed_actions

            publish(s, self.tenant_id, journey.id, self.clock.now(), actions=installed_actions())
            return journey.id

    def event(self, type_: str, email: str, key: str = "", contact: dict[str, Any] | None = None,
              **props: Any) -> None:
        with self.db.unit_of_work() as s:
            ingest(s, self.tenant_id, IncomingEvent(type=type_, key=key, contact={"email": email, **(contact or {})},
                                                    properties=props), self.clock.now())

    def snapshot(self, external_id: str, email: str, version: int, **fields: Any) -> None:
        """The host CRM reports this contact as it is now. On the sandbox host a contact's
        id is its sandbox row's id, so ``external_id`` names a sandbox contact made once."""
        ref = self._sandbox_ref(external_id, email)
        tags = fields.pop("tags", [])
        props = {"external_id": ref, "email": email, "tags": tags, "version": str(version), "fields": fields}
        with self.db.unit_of_work() as s:
            ingest(s, self.tenant_id, IncomingEvent(type="contact_upserted", contact={"id": ref, "email": email},
                                                    properties=props, dedup_key=f"snap:{ref}:{version}"),
                   self.clock.now())

    def _sandbox_ref(self, name: str, email: str) -> str:
        from crm_journeys.storage.models import SandboxContact

        if name not in self._sandbox_ids:
            with self.db.unit_of_work() as s:
                row = SandboxContact(tenant_id=self.tenant_id, email=email, fields={}, tags=[], groups=[],
                                     created_at=self.clock.now(), modified_at=self.clock.now())
                s.add(row)
                s.flush()
                self._sandbox_ids[name] = str(row.id)
        return self._sandbox_ids[name]

    # --- running --------------------------------------------------------------------------
    def run(self) -> None:
        self.worker.drain()

    def advance(self, **delta: float) -> None:
        advance_to(self.worker, self.clock, self.clock.now() + timedelta(**delta))

    # --- reading back ---------------------------------------------------------------------
    def outbox(self) -> list[OutboxMessage]:
        with self.db.unit_of_work() as s:
            return list(s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == self.tenant_id)
                                  .order_by(OutboxMessage.id)))

    def actions_for(self, email: str) -> list[tuple[str, str]]:
        """(step, action) of every outbox row of the contact, in order."""
        from crm_journeys.storage.models import Contact

        with self.db.unit_of_work() as s:
            cid = s.scalar(select(Contact.id).where(Contact.tenant_id == self.tenant_id, Contact.email == email))
            rows = s.execute(select(OutboxMessage.step, OutboxMessage.action)
                             .where(OutboxMessage.contact_id == cid).order_by(OutboxMessage.id)).all()
        return [(r.step, r.action) for r in rows]

    def crm_records(self, kind: str) -> list[SandboxRecord]:
        with self.db.unit_of_work() as s:
            return list(s.scalars(select(SandboxRecord).where(SandboxRecord.tenant_id == self.tenant_id,
                                                              SandboxRecord.kind == kind)))

    def instances(self) -> list[Instance]:
        with self.db.unit_of_work() as s:
            return list(s.scalars(select(Instance).where(Instance.tenant_id == self.tenant_id)
                                  .order_by(Instance.id)))

    def branches(self, step: str) -> list[str]:
        with self.db.unit_of_work() as s:
            return list(s.scalars(select(StepLog.branch).where(StepLog.tenant_id == self.tenant_id,
                                                               StepLog.step == step, StepLog.kind == "branch")
                                  .order_by(StepLog.id)))


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def harness(database: Database, clock: VirtualClock) -> Harness:
    return Harness(database, clock)
