"""Owners as users know them, installed on each host's fake: the builder's owner list,
emails resolved to the host's ids at publish (an unknown owner refused there, naming the
step), "the contact's owner" resolved when the action runs, and round-robin over the picked
owners."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select

from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.storage.models import JourneyVersion
from tests import test_install_hosts as hosts
from tests.fakes.bottlecrm import HUMAN_PROFILE as BCRM_KIM
from tests.fakes.bottlecrm import SALES_PROFILE as BCRM_SAM
from tests.fakes.dynamics import HUMAN_USER as DYN_SAM
from tests.fakes.odoo import SALES_UID as ODOO_SAM
from tests.fakes.salesforce import HUMAN_USER as SF_SAM
from tests.test_install_hosts import Env, install, journey, seed

SAM = {"hubspot": "41629779", "salesforce": SF_SAM, "dynamics": DYN_SAM, "odoo": str(ODOO_SAM),
       "bottlecrm": BCRM_SAM}
SECOND = {"hubspot": ("kim@sales.example", "41629780"),
          "salesforce": ("kim@sales.example", "005000000000003AAA"),
          "dynamics": ("kim@sales.example", "8d7b1a52-0000-4000-8000-00000000c003"),
          "odoo": ("admin@acme.example", "2"),
          "bottlecrm": ("sam@acme.example", BCRM_KIM)}



@pytest.fixture(params=list(SAM))
def env(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """The install harness of ``test_install_hosts`` for the hosts with an owner directory."""
    yield from hosts.env.__wrapped__(request, tmp_path)


def call(env: Env, method: str, path: str, **kw: Any) -> Any:
    return env.app.test_client().open(path, method=method, **kw,
                                      headers={"Authorization": f"Bearer {env.token}"})


def assign(params: dict[str, Any]) -> dict[str, Any]:
    return journey("Assign", {"type": "form_submitted", "params": {"form": "demo"}}, [
        {"id": "call_them", "label": "Call", "action": "create_task",
         "params": {"subject": "Call {{ contact.first_name }}", **params}}])


def publish(env: Env, document: dict[str, Any]) -> Any:
    created = call(env, "POST", "/api/journeys", json={"document": document})
    assert created.status_code == 201, created.get_data(as_text=True)
    return created.get_json()["id"], call(env, "POST",
                                          f"/api/journeys/{created.get_json()['id']}/publish",
                                          json={})


def stored_params(env: Env, journey_id: int) -> dict[str, Any]:
    with env.state.db.unit_of_work() as s:
        version = s.scalars(select(JourneyVersion).where(JourneyVersion.journey_id == journey_id)).one()
        return version.document["steps"][0]["params"]


def owner_of(env: Env, record: dict[str, Any]) -> str:
    return str({"hubspot": lambda: record["properties"].get("hubspot_owner_id"),
                "salesforce": lambda: record["row"].get("OwnerId"),
                "dynamics": lambda: record["row"].get("_ownerid_value"),
                "odoo": lambda: record["row"].get("user_id"),
                "bottlecrm": lambda: (record["row"]["_assigned"] or [None])[0]}[env.host]())


def give_owner(env: Env, ref: str, owner: str) -> None:
    """The contact's owner, set by a salesperson in the CRM before the first sync."""
    crm = env.crm
    {"hubspot": lambda: crm.objects["contacts"][ref]["properties"].update(hubspot_owner_id=owner),
     "salesforce": lambda: crm.rows["Contact"][ref].update(OwnerId=owner),
     "dynamics": lambda: crm.rows["contacts"][ref].update(_ownerid_value=owner),
     "odoo": lambda: crm.tables["res.partner"][int(ref)].update(user_id=int(owner)),
     "bottlecrm": lambda: crm.contacts[ref].update(assigned_to=[owner])}[env.host]()


def test_owner_picker_lists_the_hosts_active_users(env: Env) -> None:
    install(env)
    answer = call(env, "GET", "/api/owners")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    first, *users = answer.get_json()
    assert first["id"] == "contact_owner" and first["kind"] == "contact_owner"
    by_email = {u["email"]: u for u in users}
    assert by_email["sam@sales.example"]["id"] == SAM[env.host]
    assert by_email["sam@sales.example"]["name"] == "Sam Seller"
    assert "gone@sales.example" not in by_email, "a deactivated user is offered"
    assert all(u["complete"] for u in users)


def test_owner_email_becomes_the_hosts_id_at_publish(env: Env) -> None:
    install(env)
    journey_id, answer = publish(env, assign({"owner": "Sam@Sales.example"}))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert stored_params(env, journey_id)["owner"] == SAM[env.host]
    shown = call(env, "GET", f"/api/journeys/{journey_id}").get_json()
    assert shown["draft"]["steps"][0]["params"]["owner"] == SAM[env.host]
    assert shown["unpublished_changes"] is False  # the draft took the ids too


def test_unknown_or_departed_owner_is_refused_at_publish_naming_the_step(env: Env) -> None:
    install(env)
    _, answer = publish(env, assign({"owners": ["sam@sales.example", "gone@sales.example"]}))
    assert answer.status_code == 422, answer.get_data(as_text=True)
    errors = answer.get_json()["errors"]
    assert list(errors) == ["steps[0].params.owners[1]"]
    assert "'call_them'" in errors["steps[0].params.owners[1]"][0]
    assert "gone@sales.example" in errors["steps[0].params.owners[1]"][0]


def test_contact_owner_and_round_robin_resolve_when_the_actions_run(env: Env) -> None:
    refs = seed(env)
    give_owner(env, refs[0], SECOND[env.host][1])
    install(env)
    env.drain()  # the initial sync mirrors each contact's owner
    mine = assign({"owner": "contact_owner"})
    rotate = copy.deepcopy(assign({"owners": ["sam@sales.example", SECOND[env.host][0]]}))
    rotate["starting_points"][0]["params"]["form"] = "callback"
    for document in (mine, rotate):
        assert publish(env, document)[1].status_code == 200
    with env.state.db.unit_of_work() as s:
        for ref in refs:
            for form in ("demo", "callback"):
                ingest(s, env.tenant_id, IncomingEvent(type="form_submitted", key=form,
                                                       contact={"id": ref}), env.crm.clock.now())
    env.drain()
    rows = env.outbox()
    assert all(r.status == "done" for r in rows), [r.last_error for r in rows]
    emails = {c.id: email for email, c in env.contacts().items()}
    mine_owners: dict[str, str] = {}
    rotated: list[str] = []
    for row in rows:
        [record] = env.crm.written("task", row.idempotency_key)
        if row.params.get("owners"):
            rotated.append(owner_of(env, record))
        else:
            mine_owners[emails[row.contact_id]] = owner_of(env, record)
    assert mine_owners["ada@example.com"] == SECOND[env.host][1]  # Ada's own owner
    assert SECOND[env.host][1] not in (mine_owners["grace@example.com"],
                                       mine_owners["alan@example.com"])  # theirs: the host's default
    assert len(rotated) == 3 and set(rotated) == {SAM[env.host], SECOND[env.host][1]}


def test_owner_list_says_when_the_crm_cannot_answer(env: Env) -> None:
    install(env)
    env.crm.inject(503, {"message": "maintenance"}, times=50)
    answer = call(env, "GET", "/api/owners")
    assert answer.status_code == 502, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["code"] == "crm_unavailable" and "could not list its users" in body["message"]
    _, refused = publish(env, assign({"owner": "sam@sales.example"}))
    assert refused.status_code == 422  # an owner cannot be checked: not published unchecked
    assert "could not list its users" in refused.get_json()["errors"]["steps[0].params.owner"][0]
    env.crm.faults.clear()
    _, published = publish(env, assign({"owner": "sam@sales.example"}))
    assert published.status_code == 200  # and publishing works again once it answers
