"""One tenant's connector failure is that tenant's problem (issue 13): recorded on its row,
shown to its admin, and never in the way of another tenant's sync. Connectors are cached
by installation, so a tenant that reuses a deleted tenant's id never gets its connector."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.install import install_tenant, uninstall
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.upkeep import CrmUpkeep
from crm_journeys.storage.models import InboxEvent, Tenant
from tests.fakes.bottlecrm import FakeBottleCrm


def _runtime(database, clock):
    runtime = Runtime(db=database, clock=clock)
    runtime.settings["connector_context"] = {"limits": HostLimits(), "sleep": sleep_on(clock)}
    return runtime


def _install(runtime, slug, fake):
    return install_tenant(runtime, "bottlecrm", slug, slug,
                          {"url": fake.url, "sync_interval_seconds": 60}, {"token": fake.token},
                          check=False)


def test_a_tenant_whose_host_answers_nonsense_does_not_stop_the_others(database, clock):
    runtime = _runtime(database, clock)
    with FakeBottleCrm(clock) as broken, FakeBottleCrm(clock) as healthy:
        healthy.add_contact(email="ada@example.com", first_name="Ada", last_name="L")
        bad, good = _install(runtime, "bad", broken), _install(runtime, "good", healthy)
        broken.inject(200, {"error": False, "count": 1, "activities": [{"odd": True}]},
                      times=100, when=lambda r: r.path == "/api/activities/")
        CrmUpkeep(runtime).run_once()
        with database.unit_of_work() as s:
            tenants = {t.slug: t for t in s.scalars(select(Tenant))}
            assert "KeyError" in tenants["bad"].connector_error
            assert tenants["good"].connector_error is None
            slots = {r.tenant_id: r for r in s.scalars(select(InboxEvent).where(
                InboxEvent.type == "crm_sync"))}
            assert (slots[bad].status, slots[bad].lease_until) == ("failed", None)
            assert slots[good].status == "done"
            snapshots = s.scalars(select(InboxEvent.tenant_id).where(
                InboxEvent.type == "contact_upserted")).all()
        assert snapshots == [good]


def test_the_next_completed_sync_clears_the_error(database, clock):
    runtime = _runtime(database, clock)
    with FakeBottleCrm(clock) as host:
        tenant_id = _install(runtime, "flaky", host)
        host.inject(200, ["not", "a", "feed"], times=1, when=lambda r: r.path == "/api/activities/")
        upkeep = CrmUpkeep(runtime)
        upkeep.run_once()
        with database.unit_of_work() as s:
            said = s.get(Tenant, tenant_id).connector_error
            assert said.startswith(f"sync failed: bottlecrm at {host.url} answered in a way")
            assert "(TypeError)" in said
        clock.advance(timedelta(seconds=120))
        upkeep.run_once()
        with database.unit_of_work() as s:
            tenant = s.get(Tenant, tenant_id)
            assert (tenant.connector_error, tenant.connector_error_at) == (None, None)


def test_connectors_are_cached_by_installation_not_by_id(database, clock):
    runtime = _runtime(database, clock)
    with FakeBottleCrm(clock) as first, FakeBottleCrm(clock) as second:
        old = _install(runtime, "old", first)
        assert runtime.connector_for(old).http.host == first.url.split("//")[1]
        uninstall(runtime, old)
        new = _install(runtime, "new", second)
        assert runtime.connector_for(new).http.host == second.url.split("//")[1]
        other_process = _runtime(database, clock)  # a worker that cached the old one
        other_process._connectors[new] = (("old", "bottlecrm", None, "{}"), object())
        assert other_process.connector_for(new).http.host == second.url.split("//")[1]


def test_the_admin_sees_the_failure_and_only_its_own(app, clock):
    from tests.test_web_ui import sign_in

    tenants = app.config["TEST_TENANTS"]
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        for tid in tenants.values():
            s.get(Tenant, tid).connector = "bottlecrm"
        acme = s.get(Tenant, tenants["acme"])
        acme.connector_error = "sync failed: KeyError: 'timestamp'"
        acme.connector_error_at = clock.now()
    page = sign_in(app, "admin@acme.example").get("/admin/integrations").text
    assert "CRM connection (bottlecrm)" in page
    assert "sync failed: KeyError: &#39;timestamp&#39;" in page
    other = sign_in(app, "admin@globex.example").get("/admin/integrations").text
    assert "No sync or webhook failure recorded." in other and "KeyError" not in other


def test_crm_journeys_status_names_the_failure(database, clock):
    from click.testing import CliRunner

    from crm_journeys.cli import main

    runtime = _runtime(database, clock)
    with FakeBottleCrm(clock) as host:
        tenant_id = _install(runtime, "acme", host)
        host.inject(200, ["not", "a", "feed"], when=lambda r: r.path == "/api/activities/")
        CrmUpkeep(runtime).run_once()
    result = CliRunner().invoke(main, ["--database", database.url, "status", "--tenant", "acme"])
    slug, host_name, state = result.output.strip().split("\t")
    assert (slug, host_name) == ("acme", "bottlecrm") and tenant_id
    assert state.startswith("last failure ") and "(TypeError)" in state
