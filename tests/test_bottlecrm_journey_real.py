"""A journey on the real BottleCRM, end to end, as a customer would run it (issue 13).

Install through ``/install/bottlecrm``, the worker's initial sync, a journey that creates a
task for the salesperson, a lead, a call and an appointment; a simulated crash that runs
every action again (nothing doubles); the incremental sync of a human's tag, field edit and
deletion; and echo suppression (our own write starts nothing, the same edit by a person
does). The runtime runs on a virtual clock only to fire its polling slots; the host's
own tables are checked for what was written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_journeys.actions.registry import installed_actions
from crm_journeys.app import create_app
from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.models import Contact, OutboxMessage
from tests.bottlecrm_people import Human, unique_email
from tests.test_install_hosts import INSTALL_KEY, journey

pytestmark = pytest.mark.bottlecrm
POLL = 60


def _journeys(owner: str) -> list[dict[str, Any]]:
    demo = journey("Demo request", {"type": "form_submitted", "params": {"form": "demo"}}, [
        {"id": "task", "label": "Task", "action": "create_task",
         "params": {"subject": "Prepare the demo for {{ contact.first_name }}", "owner": owner}},
        {"id": "lead", "label": "Lead", "action": "create_lead",
         "params": {"title": "Demo requested", "owner": owner}},
        {"id": "call", "label": "Call", "action": "create_phone_call",
         "params": {"subject": "Call about the demo", "owner": owner}},
        {"id": "meet", "label": "Meeting", "action": "create_appointment",
         "params": {"subject": "Demo meeting", "owner": owner, "due_in_days": 2}}])
    renamed = journey("Renamed", {"type": "field_changed",
                                  "params": {"field": "first_name", "value": "Gigi"}}, [
        {"id": "hello", "label": "Hello", "action": "create_task",
         "params": {"subject": "Say hello to Gigi"}}])
    vip = journey("VIP", {"type": "tag_added", "params": {"tag": "VIP"}}, [
        {"id": "vip", "label": "VIP", "action": "create_task", "params": {"subject": "VIP call"}}])
    return [demo, renamed, vip]


class Workspace:
    def __init__(self, app: Any, clock: VirtualClock):
        self.app, self.clock = app, clock
        self.state = app.extensions["crm_journeys"]
        self.tenant_id = 0

    def drain(self) -> None:
        Worker(self.state.runtime).drain()

    def poll(self) -> None:
        """The polling interval passes: the worker reads the feed."""
        self.clock.advance(timedelta(seconds=POLL + 1))
        self.drain()

    def publish(self, document: dict[str, Any]) -> None:
        with self.state.db.unit_of_work() as s:
            created = create_journey(s, self.tenant_id, document, self.clock.now())
            publish(s, self.tenant_id, created.id, self.clock.now(), actions=installed_actions())

    def contacts(self) -> dict[str, Contact]:
        with self.state.db.unit_of_work() as s:
            return {c.external_id: c for c in s.scalars(select(Contact).where(
                Contact.tenant_id == self.tenant_id))}

    def outbox(self) -> list[OutboxMessage]:
        with self.state.db.unit_of_work() as s:
            return list(s.scalars(select(OutboxMessage).where(
                OutboxMessage.tenant_id == self.tenant_id).order_by(OutboxMessage.id)))


@pytest.fixture
def workspace(tmp_path):
    clock = VirtualClock(datetime.now(UTC))
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "CRM_JOURNEYS_INSTALL_KEY": INSTALL_KEY,
                      "CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cj.db'}"}, clock=clock)
    app.extensions["crm_journeys"].runtime.settings["connector_context"] = {
        "limits": HostLimits(), "sleep": sleep_on(clock)}
    yield Workspace(app, clock)
    app.extensions["crm_journeys"].db.dispose()


def test_a_journey_on_the_real_bottlecrm(bottlecrm, workspace):
    org = bottlecrm.new_org()
    human, sales = Human(bottlecrm, org.people["admin"]), org.people["sales"]
    ada, grace, alan = (human.add_contact(first_name=n, last_name="Test", email=unique_email(n))
                        for n in ("Ada", "Grace", "Alan"))

    # install: the integration user is discovered, nothing to paste anywhere
    answer = workspace.app.test_client().post("/install/bottlecrm", json={
        "tenant": "acme", "settings": {"url": bottlecrm.url, "sync_interval_seconds": POLL},
        "credentials": {"token": org.people["integration"].token}},
        headers={"Authorization": f"Bearer {INSTALL_KEY}"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    info = answer.get_json()
    assert "webhook_url" not in info and info["polled_every_seconds"] == POLL
    workspace.tenant_id = info["tenant_id"]

    # the initial sync mirrors every contact
    workspace.drain()
    assert set(workspace.contacts()) == {ada, grace, alan}
    for document in _journeys(sales.email):
        workspace.publish(document)

    # a form submission: a task for the salesperson, a lead, a call and an appointment
    with workspace.state.db.unit_of_work() as s:
        ingest(s, workspace.tenant_id, IncomingEvent(type="form_submitted", key="demo",
                                                     contact={"id": grace}), workspace.clock.now())
    workspace.drain()
    rows = workspace.outbox()
    assert [(r.step, r.status) for r in rows] == [
        ("task", "done"), ("lead", "done"), ("call", "done"), ("meet", "done")], \
        [r.last_error for r in rows]
    written = _written(bottlecrm, grace)
    assert written == {"tasks": [("Call about the demo", sales.profile_id),
                                 ("Demo meeting", sales.profile_id),
                                 ("Prepare the demo for Grace", sales.profile_id)],
                       "leads": [("Demo requested", "assigned", sales.profile_id)]}

    # the worker dies after the calls, before committing: every row runs again
    with workspace.state.db.unit_of_work() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.tenant_id == workspace.tenant_id)
                  .values(status="pending", next_attempt_at=workspace.clock.now()))
    workspace.drain()
    assert [r.status for r in workspace.outbox()] == ["done"] * 4
    assert _written(bottlecrm, grace) == written

    # a person tags Alan, edits Grace's title and deletes Ada: the next poll brings all three
    human.call("PATCH", f"/api/contacts/{alan}/", json={"tags": [human.tag("VIP")]})
    human.change(grace, title="CTO")
    human.delete(ada)
    workspace.poll()
    mirror = workspace.contacts()
    assert mirror[alan].tags == ["VIP"]
    assert mirror[grace].fields.get("title") == "CTO"
    assert mirror[ada].deleted
    vip = [r for r in workspace.outbox() if r.step == "vip"]
    assert [(r.status, r.contact_id) for r in vip] == [("done", mirror[alan].id)]

    # echo: our own write of "Gigi" starts nothing; the same edit by a person does
    connector = workspace.state.runtime.connector_for(workspace.tenant_id)
    connector.update_fields(grace, {"first_name": "Gigi"}, "k-echo")
    workspace.poll()
    assert workspace.contacts()[grace].fields["first_name"] == "Gigi"
    assert [r for r in workspace.outbox() if r.step == "hello"] == []
    human.change(alan, first_name="Gigi")
    workspace.poll()
    hello = [r for r in workspace.outbox() if r.step == "hello"]
    assert [(r.status, r.contact_id) for r in hello] == [("done", mirror[alan].id)]


def test_a_customer_whose_lead_was_converted_gets_no_second_lead(bottlecrm, workspace):
    """The row is done with the host's reason on the timeline: no dead letter, no write."""
    org = bottlecrm.new_org()
    human = Human(bottlecrm, org.people["admin"])
    email = unique_email("won")
    wendy = human.add_contact(first_name="Wendy", last_name="Won", email=email)
    human.convert_lead(human.add_lead(email, "Signed", first_name="Wendy", last_name="Won"))
    answer = workspace.app.test_client().post("/install/bottlecrm", json={
        "tenant": "acme", "settings": {"url": bottlecrm.url, "sync_interval_seconds": POLL},
        "credentials": {"token": org.people["integration"].token}},
        headers={"Authorization": f"Bearer {INSTALL_KEY}"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    workspace.tenant_id = answer.get_json()["tenant_id"]
    workspace.drain()
    workspace.publish(journey("Demo request", {"type": "form_submitted",
                                               "params": {"form": "demo"}}, [
        {"id": "lead", "label": "Lead", "action": "create_lead",
         "params": {"title": "Demo requested"}}]))
    with workspace.state.db.unit_of_work() as s:
        ingest(s, workspace.tenant_id, IncomingEvent(type="form_submitted", key="demo",
                                                     contact={"id": wendy}), workspace.clock.now())
    workspace.drain()
    [row] = workspace.outbox()
    assert (row.status, row.last_error) == ("done", "")
    assert row.result["summary"].startswith(
        "lead 'Demo requested' not created: lead 'Signed' was already converted to account "
        "'Wendy Won' by ")
    assert bottlecrm.sql("SELECT title, status FROM lead WHERE lower(email) = :e",
                         e=email) == [("Signed", "converted")]


def _written(bottlecrm: Any, contact: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the host holds for the contact, from its own tables."""
    tasks = bottlecrm.sql(
        "SELECT t.title, a.profile_id::text FROM task t JOIN task_contacts c ON c.task_id = t.id "
        "LEFT JOIN task_assigned_to a ON a.task_id = t.id WHERE c.contact_id = :c "
        "ORDER BY t.title", c=contact)
    leads = bottlecrm.sql(
        "SELECT l.title, l.status, a.profile_id::text FROM lead l "
        "JOIN lead_contacts c ON c.lead_id = l.id "
        "LEFT JOIN lead_assigned_to a ON a.lead_id = l.id WHERE c.contact_id = :c", c=contact)
    return {"tasks": tasks, "leads": leads}
