# ruff: noqa: F811  -- the ``world`` fixture imported from test_hubspot_portals is redefined as arguments
"""HubSpot tenants installed before ``portal_id`` had a column: the unique index behind
"one tenant per account", and ``crm-journeys hubspot backfill-portals`` asking the fake
HubSpot's token metadata over loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from crm_journeys.cli import main
from crm_journeys.install import backfill_portals, install_tenant
from crm_journeys.secrets import decrypt_json
from crm_journeys.storage.models import Tenant
from tests.fakes.hubspot import deliver
from tests.test_hubspot_portals import ACME, GLOBEX, World, world  # noqa: F401


def _forget_portal(world: World, slug: str) -> None:
    """Make the tenant look as installed before the column: no portal anywhere."""
    with world.state.db.unit_of_work() as s:
        tenant = s.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        tenant.portal_id = None
        tenant.settings = {k: v for k, v in tenant.settings.items() if k not in ("portal_id", "app_id")}
    world.state.runtime.forget_connector(tenant.id)


def _tenant(world: World, slug: str) -> Tenant:
    with world.state.db.unit_of_work() as s:
        tenant = s.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        return tenant


def _cli(world: World, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--database", world.state.db.url, "hubspot", "backfill-portals", *args],
                                obj=None)
    return result.exit_code, result.output


def test_install_writes_the_column_and_the_index_allows_one_tenant_per_account(world: World) -> None:
    assert world.install("acme", ACME).status_code == 201
    acme = _tenant(world, "acme")
    assert (acme.portal_id, acme.settings["portal_id"]) == (str(ACME), str(ACME))
    with pytest.raises(IntegrityError), world.state.db.unit_of_work() as s:
        s.add(Tenant(slug="sneaky", name="Sneaky", connector="hubspot", settings={},
                     portal_id=str(ACME), created_at=world.clock.now()))
    with world.state.db.unit_of_work() as s:  # unset is not a value: any number may lack one
        for slug in ("legacy-1", "legacy-2"):
            s.add(Tenant(slug=slug, name=slug, connector="hubspot", settings={}, created_at=world.clock.now()))
        s.add(Tenant(slug="other-host", name="x", connector="odoo", settings={}, portal_id=str(ACME),
                     created_at=world.clock.now()))


def test_backfill_asks_hubspot_renews_an_expired_token_and_routes_webhooks_again(world: World) -> None:
    ref = world.crms[ACME].add_contact(email="ada@example.com", first_name="Ada", last_name="L")
    assert world.install("acme", ACME).status_code == 201
    _forget_portal(world, "acme")
    lost = deliver(world.hook, [world.crms[ACME].event(ref)], world.clock.now())
    assert lost.json() == {"accepted": 0, "new": 0, "ignored": 1}  # no tenant has the account
    world.clock.advance(timedelta(hours=2))  # the access token (30 minutes) has expired
    old_token = decrypt_json(_tenant(world, "acme").credentials)["access_token"]

    code, output = _cli(world)
    assert code == 0, output
    assert output.strip() == f"acme: recorded: HubSpot account {ACME}"
    acme = _tenant(world, "acme")
    assert (acme.portal_id, acme.settings["portal_id"], acme.settings["app_id"]) == (
        str(ACME), str(ACME), "54321")
    renewed = decrypt_json(acme.credentials)["access_token"]
    assert renewed != old_token and renewed not in output and old_token not in output
    answer = deliver(world.hook, [world.crms[ACME].event(ref)], world.clock.now())
    assert answer.json() == {"accepted": 1, "new": 1, "ignored": 0}
    again = _cli(world)
    assert again == (0, "every installed HubSpot tenant has its portal id\n")


def test_backfill_reports_an_account_another_tenant_holds(world: World) -> None:
    assert world.install("acme", ACME).status_code == 201
    _forget_portal(world, "acme")
    assert world.install("acme-again", ACME).status_code == 201  # nothing said it was taken
    assert world.install("globex", GLOBEX).status_code == 201
    _forget_portal(world, "globex")
    code, output = _cli(world)
    assert code == 1
    assert output.splitlines() == [
        f"acme: conflict: HubSpot account {ACME} is already tenant 'acme-again'; uninstall one",
        f"globex: recorded: HubSpot account {GLOBEX}"]
    assert _tenant(world, "acme").portal_id is None


def test_backfill_says_why_not_for_a_token_it_cannot_describe_or_renew(world: World) -> None:
    crm = world.crms[ACME]
    install_tenant(world.state.runtime, "hubspot", "private", "Private app",
                   {"base_url": crm.url, "oauth_api_url": world.auth.url},
                   {"access_token": "pat-na1-secret-token", "client_secret": "x"}, check=False)
    assert world.install("globex", GLOBEX).status_code == 201
    results = backfill_portals(world.state.runtime, ["private", "globex", "nobody"])
    assert [(r.slug, r.outcome) for r in results] == [
        ("globex", "already"), ("nobody", "failed"), ("private", "failed")]
    private = results[-1]
    assert "cannot be renewed" in private.message and "pat-na1-secret-token" not in private.message
    assert not private.retry
    code, output = _cli(world, "--tenant", "private")
    assert code == 1 and output.startswith("private: failed: ") and "secret-token" not in output
