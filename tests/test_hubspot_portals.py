"""HubSpot's one webhook URL per app (``POST /hooks/hubspot``), routed by ``portalId``:
two tenants installed through OAuth on two accounts of the fake HubSpot, signed batches
over loopback HTTP, the worker fetching what the hints name, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from crm_journeys.actions.registry import installed_actions
from crm_journeys.app import create_app
from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.http import HostLimits
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, InboxEvent, OutboxMessage, Tenant
from tests.fakes.hubspot import APP_ID, CLIENT_SECRET, FakeHubSpot, FakeHubSpotAuth, deliver

ACME, GLOBEX, STRANGER = 62515, 70431, 99001  # HubSpot accounts (portals)
CLIENT_ID = "app-123"
PEOPLE = [("ada@example.com", "Ada", "Lovelace"), ("grace@example.com", "Grace", "Hopper"),
          ("alan@example.com", "Alan", "Turing")]
RENAMED = {  # starts when a contact's first name becomes Ada, and asks for a call
    "format_version": 1, "name": "Renamed", "settings": {"interaction_triggers_start": False},
    "entry": {"policy": "once"}, "entry_filter": None, "first_step": "follow",
    "starting_points": [{"id": "start", "filter": None, "next": None, "type": "field_changed",
                         "params": {"field": "first_name", "value": "Ada"}}],
    "steps": [{"id": "follow", "label": "Follow up", "type": "action", "action": "create_task",
               "params": {"subject": "Welcome back"}, "next": None,
               "run_multiple_times": False}],
    "goals": [], "exit_rules": []}


@dataclass
class World:
    """The plug-in served on loopback, the accounts' fakes and HubSpot's OAuth server."""

    app: Any
    base_url: str
    auth: FakeHubSpotAuth
    crms: dict[int, FakeHubSpot]
    clock: VirtualClock
    tenants: dict[int, int] = field(default_factory=dict)  # portal -> tenant id

    @property
    def state(self) -> Any:
        return self.app.extensions["crm_journeys"]

    @property
    def hook(self) -> str:
        return f"{self.base_url}/hooks/hubspot"

    def install(self, slug: str, portal: int) -> Any:
        """The admin of ``portal`` installs the app from the browser (OAuth)."""
        self.auth.choose = portal
        client = self.app.test_client()
        crm = self.crms[portal]
        started = client.post("/install/hubspot", json={"tenant": slug, "settings": {
            "base_url": crm.url, "oauth_api_url": self.auth.url, "oauth_app_url": self.auth.url}})
        assert started.status_code == 302, started.get_data(as_text=True)
        allowed = requests.get(started.location, allow_redirects=False, timeout=5)
        back = urlsplit(allowed.headers["Location"])
        answer = client.get(f"{back.path}?{back.query}", headers={"Accept": "application/json"})
        if answer.status_code == 201:
            self.tenants[portal] = answer.get_json()["tenant_id"]
        return answer

    def drain(self) -> None:
        Worker(self.state.runtime).drain()

    def publish(self, portal: int, document: dict[str, Any]) -> None:
        now, tenant_id = self.clock.now(), self.tenants[portal]
        with self.state.db.unit_of_work() as s:
            created = create_journey(s, tenant_id, document, now)
            publish(s, tenant_id, created.id, now, actions=installed_actions())

    def hints(self, portal: int | None = None) -> list[tuple[str, str]]:
        """(dedup key, object id) of the stored hints: of one tenant, or of everyone."""
        stmt = select(InboxEvent).where(InboxEvent.type == "crm_hint").order_by(InboxEvent.id)
        if portal is not None:
            stmt = stmt.where(InboxEvent.tenant_id == self.tenants[portal])
        with self.state.db.unit_of_work() as s:
            return [(r.dedup_key, r.payload["object_id"]) for r in s.scalars(stmt)]

    def contacts(self, portal: int) -> dict[str, dict[str, Any]]:
        with self.state.db.unit_of_work() as s:
            rows = s.scalars(select(Contact).where(Contact.tenant_id == self.tenants[portal]))
            return {c.email or "": dict(c.fields) for c in rows}

    def outbox(self, portal: int) -> list[tuple[str, str, str]]:
        with self.state.db.unit_of_work() as s:
            rows = s.scalars(select(OutboxMessage).where(
                OutboxMessage.tenant_id == self.tenants[portal]).order_by(OutboxMessage.id))
            return [(r.step, r.status, r.idempotency_key) for r in rows]


@pytest.fixture
def world(database: Database, clock: VirtualClock) -> Iterator[World]:
    with FakeHubSpot(clock, portal_id=ACME) as acme, FakeHubSpot(clock, portal_id=GLOBEX) as globex:
        auth = FakeHubSpotAuth(acme, globex, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        auth.start()
        app = create_app({"TESTING": True, "SECRET_KEY": "test",
                          "CRM_JOURNEYS_DATABASE_URL": database.url,
                          "CRM_JOURNEYS_OAUTH_CLIENTS": {"hubspot": {
                              "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                              "app_id": str(APP_ID)}},
                          "CRM_JOURNEYS_INSTALL_PRIVATE_HOSTS": True}, clock=clock)  # fakes on loopback
        app.extensions["crm_journeys"].runtime.settings["connector_context"] = {
            "limits": HostLimits()}
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield World(app, f"http://127.0.0.1:{server.server_port}", auth,
                        {ACME: acme, GLOBEX: globex}, clock)
        finally:
            server.shutdown()
            server.server_close()
            auth.stop()
            app.extensions["crm_journeys"].db.dispose()
        assert acme.spec_violations == [] and globex.spec_violations == []


def seeded(world: World) -> dict[int, list[str]]:
    """The same three people in both accounts, installed as acme and globex, synced."""
    refs = {portal: [crm.add_contact(email=e, first_name=f, last_name=last)
                     for e, f, last in PEOPLE] for portal, crm in world.crms.items()}
    for slug, portal in (("acme", ACME), ("globex", GLOBEX)):
        answer = world.install(slug, portal)
        assert answer.status_code == 201, answer.get_data(as_text=True)
    world.drain()  # the initial syncs
    return refs


def stranger_event(clock: VirtualClock) -> dict[str, Any]:
    """An event of an account that installed the app but has no tenant here."""
    return FakeHubSpot(clock, portal_id=STRANGER).event("1001")


def test_install_records_the_account_and_shows_the_apps_one_url(world: World) -> None:
    answers = [world.install("acme", ACME), world.install("globex", GLOBEX)]
    infos = [a.get_json() for a in answers]
    assert [i["portal_id"] for i in infos] == [str(ACME), str(GLOBEX)]
    assert {i["webhook_url"] for i in infos} == {"http://localhost/hooks/hubspot"}
    with world.state.db.unit_of_work() as s:
        settings = {t.slug: t.settings for t in s.scalars(select(Tenant))}
    assert settings["acme"]["portal_id"] == str(ACME)
    assert settings["globex"]["portal_id"] == str(GLOBEX)
    assert settings["acme"]["app_id"] == str(APP_ID)
    info_calls = [p for m, p in world.auth.requests if p.startswith("/oauth/v1/access-tokens/")]
    assert len(info_calls) == 2  # the token answer did not name the account: its metadata did


def test_one_batch_reaches_each_accounts_tenant_only(world: World) -> None:
    refs = seeded(world)
    assert refs[ACME] == refs[GLOBEX]  # same ids in both accounts: only portalId tells them apart
    for portal in (ACME, GLOBEX):
        world.publish(portal, RENAMED)
    world.clock.advance(timedelta(seconds=1))
    acme, globex = world.crms[ACME], world.crms[GLOBEX]
    acme.change_contact(refs[ACME][2], first_name="Ada")  # Alan -> Ada: starts the journey
    globex.change_contact(refs[GLOBEX][1], last_name="Brewster")  # Grace: starts nothing
    batch = [acme.event(refs[ACME][2]),
             globex.event(refs[GLOBEX][1], change=("lastname", "Brewster")),
             stranger_event(world.clock)]
    answer = deliver(world.hook, batch, world.clock.now())
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 2, "new": 2, "ignored": 1}
    # HubSpot numbers events per account here: the same event id is two different events
    assert world.hints(ACME) == [("hook:hubspot:9001", refs[ACME][2])]
    assert world.hints(GLOBEX) == [("hook:hubspot:9001", refs[GLOBEX][1])]

    world.drain()  # the worker fetches each hinted contact from its own account
    assert world.contacts(ACME)["alan@example.com"]["first_name"] == "Ada"
    assert world.contacts(ACME)["grace@example.com"]["last_name"] == "Hopper"
    assert world.contacts(GLOBEX)["grace@example.com"]["last_name"] == "Brewster"
    assert world.contacts(GLOBEX)["alan@example.com"]["first_name"] == "Alan"
    [(step, status, key)] = world.outbox(ACME)
    assert (step, status) == ("follow", "done")
    assert world.outbox(GLOBEX) == []
    assert [t["contact"] for t in acme.written("task", key)] == [refs[ACME][2]]
    assert globex.written("task", key) == []


def test_forged_or_stale_batch_is_refused_and_nothing_stored(world: World) -> None:
    refs = seeded(world)
    batch = [world.crms[ACME].event(refs[ACME][0]), world.crms[GLOBEX].event(refs[GLOBEX][0])]
    now = world.clock.now()
    forged = deliver(world.hook, batch, now, forged=True)
    stale = deliver(world.hook, batch, now - timedelta(minutes=5, seconds=1))
    elsewhere = deliver(world.hook, batch, now, signed_for=f"{world.base_url}/hooks/crm/acme")
    unsigned = requests.post(world.hook, json=batch, timeout=5)
    assert [a.status_code for a in (forged, stale, elsewhere, unsigned)] == [401] * 4
    assert "does not match" in forged.json()["error"] and "window" in stale.json()["error"]
    assert world.hints() == []


def test_unknown_account_is_ignored_and_counted(world: World) -> None:
    refs = seeded(world)
    nameless = dict(world.crms[ACME].event(refs[ACME][0]))
    nameless.pop("portalId")
    batch = [stranger_event(world.clock), stranger_event(world.clock), nameless]
    answer = deliver(world.hook, batch, world.clock.now())
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 0, "new": 0, "ignored": 3}
    assert world.hints() == []


def test_duplicate_delivery_stores_nothing_twice(world: World) -> None:
    refs = seeded(world)
    for portal in (ACME, GLOBEX):
        world.publish(portal, RENAMED)
    world.clock.advance(timedelta(seconds=1))
    world.crms[ACME].change_contact(refs[ACME][2], first_name="Ada")
    batch = [world.crms[ACME].event(refs[ACME][2]), world.crms[GLOBEX].event(refs[GLOBEX][0])]
    first = deliver(world.hook, batch, world.clock.now())
    assert first.json()["new"] == 2
    replay = requests.post(world.hook, data=first.request.body,
                           headers=dict(first.request.headers), timeout=5)
    world.clock.advance(timedelta(seconds=60))  # HubSpot's retry: signed anew, attempt 1
    retry = deliver(world.hook, [dict(e, attemptNumber=1) for e in batch], world.clock.now())
    assert [(a.status_code, a.json()["new"]) for a in (replay, retry)] == [(202, 0), (202, 0)]
    assert len(world.hints(ACME)) == 1 and len(world.hints(GLOBEX)) == 1
    world.drain()
    deliver(world.hook, batch, world.clock.now())  # once more after the worker took them
    world.drain()
    assert [(step, status) for step, status, _ in world.outbox(ACME)] == [("follow", "done")]
    assert len(world.hints()) == 2


def test_per_tenant_url_still_works_for_its_own_account_only(world: World) -> None:
    refs = seeded(world)
    url = f"{world.base_url}/hooks/crm/acme"
    answer = world.crms[ACME].emit_webhook(url, refs[ACME][0])
    assert answer.status_code == 202 and answer.json()["new"] == 1
    assert world.crms[ACME].emit_webhook(url, refs[ACME][0], forged=True).status_code == 401
    # the app's secret signs every account's events: globex's are not acme's to keep
    batch = [world.crms[GLOBEX].event(refs[GLOBEX][1]), world.crms[ACME].event(refs[ACME][1])]
    answer = deliver(url, batch, world.clock.now())
    assert answer.status_code == 202 and answer.json() == {"accepted": 1, "new": 1}
    assert [o for _, o in world.hints(ACME)] == [refs[ACME][0], refs[ACME][1]]
    assert world.hints(GLOBEX) == []


def test_an_account_is_installed_once(world: World) -> None:
    assert world.install("acme", ACME).status_code == 201
    again = world.install("acme-two", ACME)
    assert again.status_code == 400
    assert again.get_json()["errors"] == {
        "settings.portal_id": f"HubSpot account {ACME} is already installed as tenant 'acme'"}
    with world.state.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Tenant)) == 1


def test_account_named_by_the_token_answer_needs_no_metadata_call(world: World) -> None:
    world.auth.hub_id_in_answer = True
    assert world.install("globex", GLOBEX).status_code == 201
    with world.state.db.unit_of_work() as s:
        assert s.get(Tenant, world.tenants[GLOBEX]).settings["portal_id"] == str(GLOBEX)
    assert not [p for _, p in world.auth.requests if p.startswith("/oauth/v1/access-tokens/")]


def test_without_a_configured_app_hubspot_is_asked_to_retry(database: Database,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.delenv(f"CRM_JOURNEYS_HUBSPOT_{name}", raising=False)
    app = create_app({"TESTING": True, "SECRET_KEY": "test",
                      "CRM_JOURNEYS_DATABASE_URL": database.url})
    try:
        answer = app.test_client().post("/hooks/hubspot", json=[{"portalId": ACME}])
        assert answer.status_code == 503
    finally:
        app.extensions["crm_journeys"].db.dispose()
