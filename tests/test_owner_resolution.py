"""Owner resolution at publish, without a CRM: the rules of ``runtime/owners.py``."""

from __future__ import annotations

import pytest

from crm_journeys.actions.registry import installed_actions
from crm_journeys.connectors.base import Owner
from crm_journeys.errors import DefinitionError, RetriableConnectorError
from crm_journeys.runtime.owners import resolve_owners

OWNERS = [Owner("005000000000002AAA", "Sam Seller", "sam@sales.example"),
          Owner("005000000000003AAA", "Kim Closer", "kim@sales.example")]


def doc(*steps: dict) -> dict:
    return {"steps": [{"id": f"s{i}", "type": "action", **step} for i, step in enumerate(steps)]}


def test_emails_ids_short_ids_and_contact_owner_are_resolved():
    document = doc({"action": "create_lead", "params": {"title": "t", "owner": "SAM@sales.example"}},
                   {"action": "create_task", "params": {"subject": "s", "owners": [
                       "005000000000003", "contact_owner", "005000000000002AAA"]}},
                   {"action": "send_email", "params": {"subject": "x", "body": "owner@x.example"}})
    out = resolve_owners(document, installed_actions(), lambda: OWNERS)
    assert out["steps"][0]["params"]["owner"] == "005000000000002AAA"
    assert out["steps"][1]["params"]["owners"] == ["005000000000003AAA", "contact_owner",
                                                   "005000000000002AAA"]
    assert out["steps"][2]["params"]["body"] == "owner@x.example"  # not an owner parameter
    assert document["steps"][0]["params"]["owner"] == "SAM@sales.example"  # input untouched


def test_every_unknown_owner_is_named_with_its_step():
    document = doc({"action": "create_task", "params": {"subject": "s", "owner": "x@y.example"}},
                   {"action": "create_lead", "params": {"title": "t", "owner": "42"}})
    with pytest.raises(DefinitionError) as info:
        resolve_owners(document, installed_actions(), lambda: OWNERS)
    assert set(info.value.errors) == {"steps[0].params.owner", "steps[1].params.owner"}
    assert "step 's1': '42' is not an active user" in info.value.errors["steps[1].params.owner"][0]


def test_the_crm_is_asked_only_when_a_step_names_an_owner():
    def down():
        raise RetriableConnectorError("crm down")

    plain = doc({"action": "create_task", "params": {"subject": "s"}})
    assert resolve_owners(plain, installed_actions(), down) is plain
    named = doc({"action": "create_task", "params": {"subject": "s", "owner": "sam@sales.example"}})
    with pytest.raises(DefinitionError, match="could not list its users"):
        resolve_owners(named, installed_actions(), down)
    assert resolve_owners(named, installed_actions(), lambda: None) is named  # free-text host


def test_a_tenant_whose_connector_cannot_be_built_still_publishes_without_owners():
    from crm_journeys.runtime.owners import owner_lookup

    class Broken:
        def connector_for(self, tenant_id: int):
            raise KeyError("access_token")

    lookup = owner_lookup(Broken(), 1)  # type: ignore[arg-type]
    plain = doc({"action": "create_task", "params": {"subject": "s"}})
    assert resolve_owners(plain, installed_actions(), lookup) is plain
    named = doc({"action": "create_task", "params": {"subject": "s", "owner": "sam@sales.example"}})
    with pytest.raises(DefinitionError, match="could not be set up .*KeyError"):
        resolve_owners(named, installed_actions(), lookup)
