"""Migration 0004 on real databases: HubSpot portal ids move from the settings JSON into
their own column (a second claim on one account stays unset), the schema then matches the
models, and a downgrade loses no tenant's rows (SQLite must not rebuild ``cj_tenant``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, column, func, insert, select, table

from crm_journeys.storage.db import Database
from crm_journeys.storage.migrate import downgrade, include_object, upgrade
from crm_journeys.storage.models import Base, Journey, Tenant
from tests.conftest import START, _backends, empty_database

LEGACY = [  # slug, connector, settings as stored before 0004
    ("acme", "hubspot", {"portal_id": "62515"}),
    ("acme-copy", "hubspot", {"portal_id": "62515"}),  # installed twice: no constraint said no
    ("globex", "hubspot", {"portal_id": 70431, "app_id": "54321"}),
    ("odoo-shop", "odoo", {"portal_id": "1"}),
    ("private", "hubspot", {}),
]


@pytest.fixture(params=_backends())
def at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with empty_database(request.param, tmp_path) as db:
        upgrade(db.engine, "0003")
        yield db


def _legacy_tenants(db: Database) -> None:
    old = table("cj_tenant", column("slug"), column("name"), column("connector"),
                column("settings", JSON), column("credentials"), column("webhook_secret"),
                column("created_at"))
    with db.engine.begin() as conn:
        conn.execute(insert(old), [{"slug": slug, "name": slug, "connector": host, "settings": settings,
                                    "credentials": "", "webhook_secret": "", "created_at": START}
                                   for slug, host, settings in LEGACY])


def test_portal_ids_move_into_their_column_and_the_schema_matches(at_0003: Database) -> None:
    _legacy_tenants(at_0003)
    upgrade(at_0003.engine)
    with at_0003.unit_of_work() as s:
        found = dict(s.execute(select(Tenant.slug, Tenant.portal_id)).all())
    assert found == {"acme": "62515", "acme-copy": None, "globex": "70431", "odoo-shop": None,
                     "private": None}
    with at_0003.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object,
                                                         "compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name == "cj_alembic_version")]
    assert diff == []


def test_downgrade_and_upgrade_keep_every_row(at_0003: Database) -> None:
    _legacy_tenants(at_0003)
    upgrade(at_0003.engine)
    with at_0003.unit_of_work() as s:
        acme = s.scalar(select(Tenant.id).where(Tenant.slug == "acme"))
        s.add(Journey(tenant_id=acme, name="kept", created_at=START, updated_at=START))
    downgrade(at_0003.engine, "0003")  # dropping a column of cj_tenant must not cascade
    upgrade(at_0003.engine)
    with at_0003.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Journey)) == 1
        assert s.scalar(select(func.count()).select_from(Tenant)) == len(LEGACY)
