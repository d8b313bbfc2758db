"""Migration 0008 on real databases: secrets stored in plain text before it are sealed
(and still read back the same), users get a session version and the forced-change flag,
the throttle table exists, the schema matches the models, and a downgrade keeps rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, insert, select, table, text

from crm_journeys.storage.auth_models import User
from crm_journeys.storage.db import Database
from crm_journeys.storage.migrate import downgrade, include_object, upgrade
from crm_journeys.storage.models import Base, Journey, Tenant
from tests.conftest import START, _backends, empty_database


@pytest.fixture(params=_backends())
def at_0005(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with empty_database(request.param, tmp_path) as db:
        upgrade(db.engine, "0005")
        yield db


def _plain_rows(db: Database) -> None:
    tenants = table("cj_tenant", column("id"), column("slug"), column("name"), column("connector"),
                    column("settings"), column("credentials"), column("webhook_secret"), column("created_at"))
    journeys = table("cj_journey", column("id"), column("tenant_id"), column("name"), column("status"),
                     column("draft"), column("trigger_secret"), column("created_at"), column("updated_at"))
    users = table("cj_user", column("tenant_id"), column("email"), column("password_hash"), column("role"),
                  column("active"), column("created_at"))
    with db.engine.begin() as conn:
        conn.execute(insert(tenants).values(id=1, slug="acme", name="Acme", connector="sandbox", settings="{}",
                                            credentials="", webhook_secret="plain-webhook-secret",
                                            created_at=START))
        conn.execute(insert(journeys).values(id=1, tenant_id=1, name="J", status="draft", draft="{}",
                                             trigger_secret="plain-trigger", created_at=START, updated_at=START))
        conn.execute(insert(users).values(tenant_id=1, email="a@acme.example", password_hash="x", role="admin",
                                          active=True, created_at=START))


def test_plain_secrets_are_sealed_and_the_schema_matches(at_0005: Database) -> None:
    _plain_rows(at_0005)
    upgrade(at_0005.engine)
    with at_0005.engine.connect() as conn:
        raw = conn.execute(text("SELECT webhook_secret FROM cj_tenant")).scalar()
        raw_trigger = conn.execute(text("SELECT trigger_secret FROM cj_journey")).scalar()
    assert raw.startswith("sealed:") and "plain-webhook-secret" not in raw
    assert raw_trigger.startswith("sealed:") and "plain-trigger" not in raw_trigger
    with at_0005.unit_of_work() as s:
        assert s.scalar(select(Tenant.webhook_secret)) == "plain-webhook-secret"
        assert s.scalar(select(Journey.trigger_secret)) == "plain-trigger"
        user = s.scalar(select(User))
        assert (user.session_version, user.must_change_password) == (0, False)
    with at_0005.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name == "cj_alembic_version")]
    assert diff == []


def test_downgrade_and_upgrade_keep_every_row(at_0005: Database) -> None:
    _plain_rows(at_0005)
    upgrade(at_0005.engine)
    downgrade(at_0005.engine, "0005")  # dropping user columns must not lose users
    upgrade(at_0005.engine)
    with at_0005.unit_of_work() as s:
        assert s.scalar(select(User.email)) == "a@acme.example"
        assert s.scalar(select(Tenant.webhook_secret)) == "plain-webhook-secret"
