"""The fake BottleCRM against the real one: the connector's own requests, sent by the same
scenario to both, must meet the same status codes and bodies of the same shape.

The fake stays for fast tests; this is what keeps it honest. A fake built from
``openapi.yaml`` agreed with the description and hid the server's differences (issue 13):
here the real server is the reference. Shapes are compared structurally: the same JSON
types, the same keys at the top two levels, and deeper down no key the server lacks
(the fake may leave out fields the connector never reads). ``null`` matches any type.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_journeys.connectors.base import ActivitySpec, LeadSpec
from crm_journeys.connectors.bottlecrm import BottleCrmConnector
from crm_journeys.connectors.contract import drain
from crm_journeys.connectors.http import HostLimits
from crm_journeys.errors import ConnectorError
from tests.bottlecrm_people import Human
from tests.fakes.bottlecrm import FakeBottleCrm

pytestmark = pytest.mark.bottlecrm
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EMAIL = re.compile(r"[\w.+-]+(%40|@)[\w.-]+")
# Catalogues the server adds for its own forms (pickers); the connector reads none of them,
# so the fake may leave them empty. Every other list must be empty in both or in neither.
CATALOGUES = {"countries", "industries", "users", "users_mention", "contacts", "status",
              "source", "roles", "colleagues", "priority", "custom_field_definitions"}


class Exchange:
    """One request and its answer, with ids and emails abstracted away."""

    def __init__(self, response: Any):
        request = response.request
        path = request.path_url
        self.call = f"{request.method} {EMAIL.sub('{email}', UUID.sub('{id}', path))}"
        self.status = response.status_code
        kind = response.headers.get("Content-Type", "")
        self.body = response.json() if "json" in kind else ("<html>" if "html" in kind else None)


def record(connector: BottleCrmConnector, into: list[Exchange]) -> BottleCrmConnector:
    connector.http.session.hooks["response"].append(
        lambda response, *args, **kwargs: into.append(Exchange(response)))
    return connector


def scenario(url: str, token: str, member_token: str, add_contact: Any, add_lead: Any,
             convert: Any, owner: str) -> list[Exchange]:
    """What an install and a journey's first writes ask of the host."""
    seen: list[Exchange] = []
    connector = record(BottleCrmConnector({"url": url}, {"token": token}, limits=HostLimits()),
                       seen)
    connector.settings.update(connector.discover_settings())
    connector.integration_user = connector.settings["integration_user_id"]
    _, cursor, _ = drain(connector, None, 100)
    ada, bob, cy = add_contact("Ada"), add_contact("Bob"), add_contact("Cy")
    add_lead(bob)
    convert(add_lead(cy))
    due = datetime.now(UTC) + timedelta(days=1)
    connector.create_lead(ada["id"], LeadSpec(title="Welcome", value=5, owner=owner), "k-lead")
    connector.create_lead(ada["id"], LeadSpec(title="Welcome"), "k-lead")
    connector.create_lead(bob["id"], LeadSpec(title="Welcome"), "k-lead-bob")
    converted = connector.create_lead(cy["id"], LeadSpec(title="Welcome"), "k-lead-cy")
    assert not converted.created and "already converted" in converted.detail
    connector.create_activity(ada["id"], ActivitySpec("task", "Call", due, owner=owner), "k-task")
    connector.add_tag(ada["id"], "Parity VIP", "k-tag")
    connector.update_fields(ada["id"], {"title": "Customer"}, "k-field")
    drain(connector, cursor, 100)
    assert connector.fetch_contact(str(uuid.uuid4())) is None
    for who, path in ((member_token, ""), ("bcrm_pat_not-a-token", ""), (token, "/nowhere")):
        other = record(BottleCrmConnector({"url": url + path}, {"token": who},
                                          limits=HostLimits()), seen)
        try:
            other.discover_settings()
            other.picker_values("owners")
        except ConnectorError:
            pass
    return seen


def shape_differences(fake: Any, real: Any, where: str = "$", depth: int = 0) -> list[str]:
    if fake is None or real is None:
        return []
    if isinstance(real, dict) and isinstance(fake, dict):
        problems = [f"{where}.{k}: not in the server's answer" for k in fake if k not in real]
        if depth < 2:
            problems += [f"{where}.{k}: missing from the fake" for k in real if k not in fake]
        for key in fake.keys() & real.keys():
            problems += shape_differences(fake[key], real[key], f"{where}.{key}", depth + 1)
        return problems
    if isinstance(real, list) and isinstance(fake, list):
        if bool(real) != bool(fake) and where.rsplit(".", 1)[-1] not in CATALOGUES:
            return [f"{where}: {len(fake)} items in the fake, {len(real)} on the server"]
        return shape_differences(fake[0], real[0], f"{where}[0]", depth + 1) if real and fake else []
    if _kind(fake) != _kind(real):
        return [f"{where}: {_kind(fake)} in the fake, {_kind(real)} on the server"]
    return []


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def test_fake_answers_the_connectors_requests_as_the_server_does(bottlecrm):
    org = bottlecrm.new_org()
    human = Human(bottlecrm, org.people["admin"])
    tag = uuid.uuid4().hex[:6]

    def real_contact(name: str) -> dict[str, Any]:
        return {"id": human.add_contact(first_name=name, last_name="Parity",
                                        email=f"{name.lower()}.{tag}@example.com")}

    def real_lead(contact: dict[str, Any]) -> str:
        email = human.call("GET", f"/api/contacts/{contact['id']}/")["contact_obj"]["email"]
        return human.add_lead(email.upper(), first_name="Pat", last_name="Parity")

    real = scenario(bottlecrm.url, org.people["integration"].token, org.people["member"].token,
                    real_contact, real_lead, human.convert_lead, org.people["sales"].email)

    with FakeBottleCrm() as host:
        def fake_contact(name: str) -> dict[str, Any]:
            return {"id": host.add_contact(email=f"{name.lower()}.{tag}@example.com",
                                           first_name=name, last_name="Parity")}

        def fake_lead(contact: dict[str, Any]) -> str:
            return host.add_lead(contact["id"], title="By hand", status="assigned")

        fake = scenario(host.url, host.token, host.member_token, fake_contact, fake_lead,
                        host.convert_lead, "sam@acme.example")

    assert [e.call for e in fake] == [e.call for e in real]
    problems = [f"{f.call}: {f.status} from the fake, {r.status} from the server"
                for f, r in zip(fake, real, strict=True) if f.status != r.status]
    problems += [f"{f.call}: {p}" for f, r in zip(fake, real, strict=True)
                 for p in shape_differences(f.body, r.body)]
    assert problems == [], "\n".join(problems)
