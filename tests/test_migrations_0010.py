"""Migration 0010 on real databases: contacts get an empty ``records`` (related records),
the schema then matches the models, and a downgrade keeps every contact and its instances."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, column, func, insert, select, table

from crm_journeys.actions.registry import installed_actions
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.storage.db import Database
from crm_journeys.storage.migrate import downgrade, include_object, upgrade
from crm_journeys.storage.models import Base, Contact, Instance
from tests.conftest import START, _backends, empty_database
from tests.sp_helpers import journey as journey_doc
from tests.sp_helpers import sp


@pytest.fixture(params=_backends())
def at_0005(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with empty_database(request.param, tmp_path) as db:
        upgrade(db.engine, "0005")
        yield db


def _old_contact(db: Database) -> int:
    with db.unit_of_work() as s:
        tenant_id = create_tenant(s, "acme", "Acme", START).id
    old = table("cj_contact", column("tenant_id"), column("external_id"), column("email"),
                column("fields", JSON), column("tags", JSON), column("groups", JSON),
                column("segments", JSON), column("activity", JSON), column("deleted"), column("updated_at"))
    with db.engine.begin() as conn:
        conn.execute(insert(old), [{"tenant_id": tenant_id, "external_id": "7", "email": "ada@example.com",
                                    "fields": {"plan": "gold"}, "tags": [], "groups": [], "segments": [],
                                    "activity": {}, "deleted": False, "updated_at": START}])
    return tenant_id


def test_contacts_start_with_no_related_records_and_the_schema_matches(at_0005: Database) -> None:
    _old_contact(at_0005)
    upgrade(at_0005.engine)
    with at_0005.unit_of_work() as s:
        contact = s.scalar(select(Contact))
        assert contact is not None and contact.records == {} and contact.fields == {"plan": "gold"}
    with at_0005.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name == "cj_alembic_version")]
    assert diff == []


def test_downgrade_keeps_contacts_and_their_instances(at_0005: Database) -> None:
    tenant_id = _old_contact(at_0005)
    upgrade(at_0005.engine)
    with at_0005.unit_of_work() as s:
        contact = s.scalar(select(Contact))
        assert contact is not None
        contact.records = {"order": {"record_id": "o-1", "status": "paid"}}
        journey = create_journey(s, tenant_id, journey_doc([sp("tag_added", {"tag": "x"})]), START)
        publish(s, tenant_id, journey.id, START, actions=installed_actions())
        s.add(Instance(tenant_id=tenant_id, journey_id=journey.id, version_id=journey.live_version_id,
                       contact_id=contact.id, status="active", step="end", entered_at=START, updated_at=START))
    downgrade(at_0005.engine, "0005")  # must not rebuild cj_contact (its instances refer to it)
    upgrade(at_0005.engine)
    with at_0005.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
        assert s.scalar(select(Contact.records)) == {}
