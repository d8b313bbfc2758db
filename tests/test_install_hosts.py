"""Installing into each of the five hosts, end to end against its fake: install (OAuth
through the fake authorization server, or a key), initial sync by the worker, a journey
writing a task and a lead exactly once, webhooks (or polling) triggering a journey, echo
suppression, forged webhooks refused, and uninstall leaving no row behind."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select, update
from werkzeug.serving import make_server

from crm_journeys.actions.registry import installed_actions
from crm_journeys.app import create_app
from crm_journeys.connectors.http import HostLimits
from crm_journeys.install import tenant_rows, update_credentials
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.runtime.worker import Worker
from crm_journeys.secrets import decrypt_json
from crm_journeys.storage.models import Contact, InboxEvent, OutboxMessage, Tenant
from tests.fakes.bottlecrm import INTEGRATION_USER as BCRM_USER
from tests.fakes.bottlecrm import FakeBottleCrm
from tests.fakes.dynamics import INTEGRATION_USER as DYN_USER
from tests.fakes.dynamics import WEBHOOK_SECRET, FakeDynamics
from tests.fakes.hubspot import APP_ID, FakeHubSpot, FakeHubSpotAuth
from tests.fakes.hubspot import CLIENT_SECRET as HUBSPOT_SECRET
from tests.fakes.oauth import FakeAuthorizationServer
from tests.fakes.odoo import DB, LOGIN, FakeOdoo
from tests.fakes.salesforce import INTEGRATION_USER as SF_USER
from tests.fakes.salesforce import FakeSalesforce

HOSTS = ["hubspot", "salesforce", "dynamics", "odoo", "bottlecrm"]
WEBHOOK_HOSTS = {"hubspot", "dynamics"}
CLIENT_ID = "app-123"
INSTALL_KEY = "operator-install-key"
OAUTH_PATHS = {"hubspot": ("/oauth/authorize", "/oauth/v1/token"),
               "salesforce": ("/services/oauth2/authorize", "/services/oauth2/token"),
               "dynamics": ("/organizations/oauth2/v2.0/authorize",
                            "/organizations/oauth2/v2.0/token")}
FAKES = {"hubspot": FakeHubSpot, "salesforce": FakeSalesforce, "dynamics": FakeDynamics,
         "odoo": FakeOdoo, "bottlecrm": FakeBottleCrm}
PEOPLE = [("ada@example.com", "Ada", "Lovelace"), ("grace@example.com", "Grace", "Hopper"),
          ("alan@example.com", "Alan", "Turing")]


def journey(name: str, start: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    for step, nxt in zip(steps, [*[s["id"] for s in steps[1:]], None], strict=True):
        step.update(type="action", next=nxt, run_multiple_times=False)
    return {"format_version": 1, "name": name, "settings": {"interaction_triggers_start": False},
            "entry": {"policy": "once"}, "entry_filter": None, "first_step": steps[0]["id"],
            "starting_points": [{"id": "start", "filter": None, "next": None, **start}],
            "steps": steps, "goals": [], "exit_rules": []}


DEMO = journey("Demo request", {"type": "form_submitted", "params": {"form": "demo"}}, [
    {"id": "task", "label": "Call", "action": "create_task",
     "params": {"subject": "Call {{ contact.first_name }} about the demo"}},
    {"id": "lead", "label": "Lead", "action": "create_lead",
     "params": {"title": "Demo requested"}}])
RENAMED = journey("Renamed", {"type": "field_changed",
                              "params": {"field": "first_name", "value": "Ada"}}, [
    {"id": "follow", "label": "Follow up", "action": "create_task",
     "params": {"subject": "Welcome back"}}])


@dataclass
class Env:
    host: str
    crm: Any
    app: Any
    base_url: str
    auth: Any = None
    slug: str = field(default_factory=lambda: f"acme-{uuid.uuid4().hex[:6]}")
    tenant_id: int = 0
    token: str = ""

    @property
    def state(self) -> Any:
        return self.app.extensions["crm_journeys"]

    def drain(self) -> None:
        Worker(self.state.runtime).drain()

    def hook_url(self) -> str:
        if self.host == "hubspot":  # the app's one URL, routed by portalId
            return f"{self.base_url}/hooks/hubspot"
        return f"{self.base_url}/hooks/crm/{self.slug}"

    def publish(self, document: dict[str, Any]) -> None:
        now = self.crm.clock.now()
        with self.state.db.unit_of_work() as s:
            created = create_journey(s, self.tenant_id, document, now)
            publish(s, self.tenant_id, created.id, now, actions=installed_actions())

    def contacts(self) -> dict[str, Contact]:
        with self.state.db.unit_of_work() as s:
            rows = s.scalars(select(Contact).where(Contact.tenant_id == self.tenant_id))
            return {c.email: c for c in rows}

    def outbox(self) -> list[OutboxMessage]:
        with self.state.db.unit_of_work() as s:
            return list(s.scalars(select(OutboxMessage).where(
                OutboxMessage.tenant_id == self.tenant_id).order_by(OutboxMessage.id)))

    def inbox_count(self) -> int:
        with self.state.db.unit_of_work() as s:
            return s.scalar(select(func.count()).select_from(InboxEvent)
                            .where(InboxEvent.tenant_id == self.tenant_id)) or 0


def settings_for(host: str, crm: Any, auth: Any) -> dict[str, Any]:
    return {
        "hubspot": lambda: {"base_url": crm.url, "oauth_api_url": auth.url,
                            "oauth_app_url": auth.url},
        "salesforce": lambda: {"login_url": auth.url},
        "dynamics": lambda: {"environment_url": crm.url, "login_url": auth.url,
                             "integration_user_id": DYN_USER},
        "odoo": lambda: {"url": crm.url, "database": DB, "login": LOGIN, "version": 19},
        "bottlecrm": lambda: {"url": crm.url, "integration_user_id": BCRM_USER["id"]},
    }[host]()


@pytest.fixture(params=HOSTS)
def env(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Env]:
    host = request.param
    with FAKES[host]() as crm:
        auth = None
        if host in OAUTH_PATHS:
            extra = {"instance_url": crm.url,
                     "id": f"https://login.example/id/00D000000000001AAA/{SF_USER}"} \
                if host == "salesforce" else {}
            if host == "hubspot":  # knows the account: tokens name their portal
                auth = FakeHubSpotAuth(crm, client_id=CLIENT_ID, client_secret=HUBSPOT_SECRET)
            else:
                auth = FakeAuthorizationServer(*OAUTH_PATHS[host], client_id=CLIENT_ID,
                                               client_secret=HUBSPOT_SECRET, extra=extra,
                                               rotate_refresh=host == "dynamics",
                                               clock=crm.clock)
            auth.on_issue = lambda token: setattr(crm, "token", token)
            auth.start()
        clients = {h: {"client_id": CLIENT_ID, "client_secret": HUBSPOT_SECRET,
                       "app_id": str(APP_ID)} for h in OAUTH_PATHS}
        app = create_app({"TESTING": True, "SECRET_KEY": "test",
                          "CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cj.db'}",
                          "CRM_JOURNEYS_OAUTH_CLIENTS": clients,
                          "CRM_JOURNEYS_INSTALL_KEY": INSTALL_KEY,
                          "CRM_JOURNEYS_INSTALL_PRIVATE_HOSTS": True}, clock=crm.clock)  # fakes on loopback
        app.extensions["crm_journeys"].runtime.settings["connector_context"] = {
            "limits": HostLimits()}
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield Env(host, crm, app, f"http://127.0.0.1:{server.server_port}", auth)
        finally:
            server.shutdown()
            server.server_close()
            if auth:
                auth.stop()
            app.extensions["crm_journeys"].db.dispose()
        assert getattr(crm, "spec_violations", []) == []


def install(env: Env) -> dict[str, Any]:
    client = env.app.test_client()
    form = client.get(f"/install/{env.host}", headers={"Accept": "application/json"}).get_json()
    body: dict[str, Any] = {"tenant": env.slug, "name": "Acme",
                            "settings": settings_for(env.host, env.crm, env.auth)}
    if form["auth"] == "api_key":
        body["credentials"] = {"odoo": {"api_key": env.crm.token},
                               "bottlecrm": {"token": env.crm.token}}[env.host]
        anonymous = client.post(f"/install/{env.host}", json=body)
        assert anonymous.status_code == 401 and env.crm.token not in anonymous.get_data(as_text=True)
        answer = client.post(f"/install/{env.host}", json=body, headers={"Authorization": f"Bearer {INSTALL_KEY}"})
    else:
        started = client.post(f"/install/{env.host}", json=body)
        assert started.status_code == 302, started.get_data(as_text=True)
        assert started.location.startswith(env.auth.url)
        allowed = requests.get(started.location, allow_redirects=False, timeout=5)  # "Allow"
        back = urlsplit(allowed.headers["Location"])
        assert back.path == f"/install/{env.host}/callback"
        answer = client.get(f"{back.path}?{back.query}", headers={"Accept": "application/json"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    info = answer.get_json()
    env.tenant_id, env.token = info["tenant_id"], info["api_token"]
    if env.host == "dynamics":  # the admin enters this on the service endpoint; the fake has its own
        update_credentials(env.state.db, env.tenant_id, {"webhook_secret": WEBHOOK_SECRET})
        env.state.runtime.forget_connector(env.tenant_id)
    return info


def seed(env: Env) -> list[str]:
    return [env.crm.add_contact(email=e, first_name=f, last_name=last) for e, f, last in PEOPLE]


def test_install_sync_journey_webhook_uninstall(env: Env) -> None:
    refs = seed(env)
    info = install(env)
    if env.host in WEBHOOK_HOSTS:
        assert info["webhook_url"] == env.hook_url().replace(env.base_url, "http://localhost")
    else:  # nothing to paste into a host that sends no webhooks
        assert "webhook_url" not in info and info["polled_every_seconds"] > 0
    if env.host == "hubspot":  # the account the token was issued for routes the app's webhooks
        assert info["portal_id"] == str(env.crm.portal_id)

    # credentials are encrypted at rest and hold what the flow obtained
    with env.state.db.unit_of_work() as s:
        tenant = s.get(Tenant, env.tenant_id)
        stored = decrypt_json(tenant.credentials)
        assert env.crm.token not in tenant.credentials
        assert stored.get("access_token", stored.get("api_key", stored.get("token"))) == env.crm.token

    # the worker runs the initial sync: every contact reaches the mirror
    env.drain()
    mirror = env.contacts()
    assert sorted(mirror) == sorted(e for e, _, _ in PEOPLE)
    assert {c.external_id for c in mirror.values()} == set(refs)

    # a published journey writes one task and one lead, even when its rows run twice
    env.publish(DEMO)
    with env.state.db.unit_of_work() as s:
        ingest(s, env.tenant_id, IncomingEvent(type="form_submitted", key="demo",
                                               contact={"id": refs[1]}), env.crm.clock.now())
    env.drain()
    rows = env.outbox()
    assert [(r.action, r.status) for r in rows] == [("create_task", "done"),
                                                   ("create_lead", "done")], rows[0].last_error
    with env.state.db.unit_of_work() as s:  # as if the worker crashed before committing
        s.execute(update(OutboxMessage).where(OutboxMessage.tenant_id == env.tenant_id)
                  .values(status="pending", next_attempt_at=env.crm.clock.now()))
    env.drain()
    task, lead = (env.crm.written(kind, row.idempotency_key) for kind, row in
                  zip(("task", "lead"), rows, strict=True))
    assert len(task) == 1 and len(lead) == 1
    assert task[0]["contact"] == refs[1] or env.host == "odoo"
    assert "Grace" in task[0]["subject"]

    # a change in the CRM reaches the journey: by webhook, else by the polling interval
    env.publish(RENAMED)
    env.crm.clock.advance(timedelta(seconds=1))  # versions are stamps, some to the second
    env.crm.change_contact(refs[2], first_name="Ada")
    if env.host in WEBHOOK_HOSTS:
        before = env.inbox_count()
        answer = env.crm.emit_webhook(env.hook_url(), refs[2])
        assert answer.status_code == 202, answer.text
        assert env.inbox_count() == before + 1
        again = env.crm.emit_webhook(env.hook_url(), refs[2], forged=True)
        assert again.status_code == 401 and env.inbox_count() == before + 1
    else:
        env.crm.clock.advance(timedelta(seconds=301))
    env.drain()
    follow = [r for r in env.outbox() if r.step == "follow"]
    assert [(r.contact_id, r.status) for r in follow] == [(env.contacts()["alan@example.com"].id, "done")]
    assert len(env.crm.written("task", follow[0].idempotency_key)) == 1

    # a forged (or, for polling hosts, any) webhook is refused and nothing is stored
    before = env.inbox_count()
    if env.host in WEBHOOK_HOSTS:
        refused = env.crm.emit_webhook(env.hook_url(), refs[0], forged=True)
    else:
        refused = requests.post(env.hook_url(), json=[{"objectId": refs[0]}], timeout=5)
    assert refused.status_code == 401
    assert env.inbox_count() == before

    # uninstall removes every row of the tenant
    before_rows = tenant_rows(env.state.db, env.tenant_id)
    assert before_rows["cj_contact"] == 3 and before_rows["cj_outbox"] == 3
    assert before_rows["cj_journey"] == 2 and before_rows["cj_inbox"] > 0
    client = env.app.test_client()
    answer = client.post(f"/install/tenants/{env.slug}/uninstall",
                         headers={"Authorization": f"Bearer {env.token}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["deleted"]["cj_contact"] == 3
    assert set(tenant_rows(env.state.db, env.tenant_id).values()) == {0}
    assert env.tenant_id not in env.state.runtime._connectors


def test_echo_updates_the_mirror_but_triggers_nothing(env: Env) -> None:
    refs = seed(env)
    install(env)
    env.drain()
    env.publish(RENAMED)
    env.crm.clock.advance(timedelta(seconds=1))
    env.crm.change_contact(refs[1], first_name="Ada", by_integration=True)
    if env.host in WEBHOOK_HOSTS:
        answer = env.crm.emit_webhook(env.hook_url(), refs[1], by_integration=True)
        assert answer.status_code == 202
    else:
        env.crm.clock.advance(timedelta(seconds=301))
    env.drain()
    grace = env.contacts()["grace@example.com"]
    assert grace.fields["first_name"] == "Ada"  # the mirror has the facts
    assert env.outbox() == []  # ... and no journey started on our own change


def test_webhook_delivered_twice_is_one_hint(env: Env) -> None:
    if env.host not in WEBHOOK_HOSTS:
        pytest.skip(f"{env.host} sends no webhooks")
    refs = seed(env)
    install(env)
    env.drain()
    before = env.inbox_count()
    answer = env.crm.emit_webhook(env.hook_url(), refs[0])
    body = answer.request.body
    replay = requests.post(env.hook_url(), data=body, headers=dict(answer.request.headers),
                           timeout=5)
    assert replay.status_code == 202 and replay.json()["new"] == 0
    assert env.inbox_count() == before + 1


def test_renewed_tokens_are_stored_back_encrypted(env: Env) -> None:
    if env.host not in OAUTH_PATHS:
        pytest.skip(f"{env.host} installs with a key")
    refs = seed(env)
    install(env)
    env.crm.token = "revoked-by-the-host"  # our access token stops working
    contact = env.state.runtime.connector_for(env.tenant_id).fetch_contact(refs[0])
    assert contact is not None and contact.email == "ada@example.com"
    with env.state.db.unit_of_work() as s:
        stored = decrypt_json(s.get(Tenant, env.tenant_id).credentials)
    assert stored["access_token"] == env.crm.token  # the renewed one, issued by the refresh
    assert stored["refresh_token"] in env.auth.refresh_tokens  # rotated at Entra ID, kept elsewhere


def test_callback_from_another_browser_is_refused(env: Env) -> None:
    if env.host not in OAUTH_PATHS:
        pytest.skip(f"{env.host} installs with a key")
    client = env.app.test_client()
    body = {"tenant": env.slug, "settings": settings_for(env.host, env.crm, env.auth)}
    started = client.post(f"/install/{env.host}", json=body)
    allowed = requests.get(started.location, allow_redirects=False, timeout=5)
    back = urlsplit(allowed.headers["Location"])
    stranger = env.app.test_client()  # no session: the state is not theirs
    answer = stranger.get(f"{back.path}?{back.query}", headers={"Accept": "application/json"})
    assert answer.status_code == 400 and "state" in answer.get_json()["errors"]
    tampered = back.query.replace("state=", "state=x")
    answer = client.get(f"{back.path}?{tampered}", headers={"Accept": "application/json"})
    assert answer.status_code == 400
    with env.state.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Tenant)
                        .where(Tenant.slug == env.slug)) == 0


def test_install_form_renders_and_reports_errors(env: Env) -> None:
    client = env.app.test_client()
    page = client.get(f"/install/{env.host}")
    assert page.status_code == 200 and 'name="settings.sync_interval_seconds"' in page.text
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.post(f"/install/{env.host}", data={
        "csrf_token": token, "tenant": "Not A Slug", "settings.sync_interval_seconds": "soon",
        "install_key": INSTALL_KEY})
    assert answer.status_code == 400
    assert "tenant: use lowercase letters" in answer.text
    assert "settings.sync_interval_seconds: must be an integer" in answer.text
    assert client.post(f"/install/{env.host}", data={"tenant": "x"}).status_code == 400  # no CSRF
