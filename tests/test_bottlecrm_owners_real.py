"""Owners as BottleCRM's users know them, on the real server (issue 13): the builder's owner
picker lists the organisation's active profiles; a journey naming a salesperson by email
is published with the profile id, and the task it creates is assigned to that profile in
the host's own tables; an unknown or deactivated person is refused at publish, naming the
step; "the contact's owner" and round-robin are resolved when the actions run.

Through the product's own HTTP API (install, ``GET /api/owners``, create and publish a
journey) and its worker, as a customer would run it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from crm_journeys.app import create_app
from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.models import JourneyVersion, OutboxMessage
from tests.bottlecrm_people import unique_email
from tests.test_install_hosts import INSTALL_KEY, journey

pytestmark = pytest.mark.bottlecrm


class Tenant:
    """crm_journeys installed on the organisation, driven through its HTTP API."""

    def __init__(self, app: Any, clock: VirtualClock):
        self.app, self.clock = app, clock
        self.state = app.extensions["crm_journeys"]
        self.tenant_id, self.token = 0, ""

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return self.app.test_client().open(path, method=method, **kw,
                                           headers={"Authorization": f"Bearer {self.token}"})

    def publish(self, document: dict[str, Any]) -> tuple[int, Any]:
        created = self.call("POST", "/api/journeys", json={"document": document})
        assert created.status_code == 201, created.get_data(as_text=True)
        journey_id = created.get_json()["id"]
        return journey_id, self.call("POST", f"/api/journeys/{journey_id}/publish", json={})

    def published_params(self, journey_id: int) -> dict[str, Any]:
        with self.state.db.unit_of_work() as s:
            version = s.scalars(select(JourneyVersion)
                                .where(JourneyVersion.journey_id == journey_id)).one()
            return dict(version.document["steps"][0]["params"])

    def submit(self, form: str, contact: str) -> None:
        with self.state.db.unit_of_work() as s:
            ingest(s, self.tenant_id, IncomingEvent(type="form_submitted", key=form,
                                                    contact={"id": contact}), self.clock.now())

    def drain(self) -> None:
        Worker(self.state.runtime).drain()

    def outbox(self) -> list[OutboxMessage]:
        with self.state.db.unit_of_work() as s:
            return list(s.scalars(select(OutboxMessage).where(
                OutboxMessage.tenant_id == self.tenant_id).order_by(OutboxMessage.id)))


@pytest.fixture
def tenant(bottlecrm, org, tmp_path):
    clock = VirtualClock(datetime.now(UTC))
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "CRM_JOURNEYS_INSTALL_KEY": INSTALL_KEY,
                      "CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cj.db'}"}, clock=clock)
    app.extensions["crm_journeys"].runtime.settings["connector_context"] = {
        "limits": HostLimits(), "sleep": sleep_on(clock)}
    installed = app.test_client().post("/install/bottlecrm", json={
        "tenant": "acme", "settings": {"url": bottlecrm.url},
        "credentials": {"token": org.people["integration"].token}},
        headers={"Authorization": f"Bearer {INSTALL_KEY}"})
    assert installed.status_code == 201, installed.get_data(as_text=True)
    workspace = Tenant(app, clock)
    workspace.tenant_id = installed.get_json()["tenant_id"]
    workspace.token = installed.get_json()["api_token"]
    yield workspace
    app.extensions["crm_journeys"].db.dispose()


def task_journey(form: str, params: dict[str, Any]) -> dict[str, Any]:
    return journey(f"Assign {form}", {"type": "form_submitted", "params": {"form": form}}, [
        {"id": "call_them", "label": "Call", "action": "create_task",
         "params": {"subject": f"Call about {form}", **params}}])


def assignees(bottlecrm: Any, contact: str) -> list[str | None]:
    """Whom the host's own tables say the contact's tasks are assigned to."""
    rows = bottlecrm.sql(
        "SELECT a.profile_id::text FROM task t JOIN task_contacts c ON c.task_id = t.id "
        "LEFT JOIN task_assigned_to a ON a.task_id = t.id WHERE c.contact_id = :c", c=contact)
    return [r[0] for r in rows]


def test_owner_picker_lists_the_real_profiles(tenant, org):
    answer = tenant.call("GET", "/api/owners")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    first, *users = answer.get_json()
    assert (first["id"], first["kind"]) == ("contact_owner", "contact_owner")
    listed = {u["email"]: u["id"] for u in users}
    assert listed == {p.email: p.profile_id for key, p in org.people.items() if key != "gone"}
    sam = next(u for u in users if u["email"] == org.people["sales"].email)
    assert sam["name"] == "Sam Seller" and sam["complete"] is True


def test_salesperson_named_by_email_gets_the_task(bottlecrm, tenant, human, org):
    sales = org.people["sales"]
    journey_id, answer = tenant.publish(task_journey("demo", {"owner": sales.email.upper()}))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert tenant.published_params(journey_id)["owner"] == sales.profile_id
    ref = human.add_contact(email=unique_email("byemail"), first_name="Ada")
    tenant.drain()  # the initial sync mirrors the contact
    tenant.submit("demo", ref)
    tenant.drain()
    assert [(r.step, r.status) for r in tenant.outbox()] == [("call_them", "done")], \
        [r.last_error for r in tenant.outbox()]
    assert assignees(bottlecrm, ref) == [sales.profile_id]


def test_unknown_or_departed_owner_is_refused_at_publish(tenant, org):
    gone = org.people["gone"].email
    _, answer = tenant.publish(task_journey("refused", {
        "owners": [org.people["sales"].email, "nobody@example.com", gone]}))
    assert answer.status_code == 422, answer.get_data(as_text=True)
    errors = answer.get_json()["errors"]
    assert sorted(errors) == ["steps[0].params.owners[1]", "steps[0].params.owners[2]"]
    assert "'call_them'" in errors["steps[0].params.owners[1]"][0]
    assert "nobody@example.com" in errors["steps[0].params.owners[1]"][0]
    assert gone in errors["steps[0].params.owners[2]"][0]


def test_contact_owner_and_round_robin_on_the_host(bottlecrm, tenant, human, org):
    sales, admin = org.people["sales"], org.people["admin"]
    theirs = human.add_contact(email=unique_email("owned"), first_name="Grace",
                               assigned_to=[sales.profile_id])
    others = [human.add_contact(email=unique_email("rr"), first_name=f"R{i}") for i in range(2)]
    tenant.drain()
    for form, params in (("mine", {"owner": "contact_owner"}),
                         ("rotate", {"owners": [sales.email, admin.email]})):
        assert tenant.publish(task_journey(form, params))[1].status_code == 200
    tenant.submit("mine", theirs)
    for ref in others:
        tenant.submit("rotate", ref)
    tenant.drain()
    rows = tenant.outbox()
    assert len(rows) == 3 and all(r.status == "done" for r in rows), [r.last_error for r in rows]
    assert assignees(bottlecrm, theirs) == [sales.profile_id]  # Grace's own salesperson
    rotated = [a for ref in others for a in assignees(bottlecrm, ref)]
    assert sorted(rotated) == sorted([sales.profile_id, admin.profile_id])
