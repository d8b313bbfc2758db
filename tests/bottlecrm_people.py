"""People acting on the real BottleCRM the way its users do: through its API with their own
tokens (so the feed names them), and a counter of the requests our connector sends."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
import requests

from crm_journeys.connectors.bottlecrm import BottleCrmConnector
from crm_journeys.connectors.http import HostLimits
from tests.bottlecrm_host import BottleCrmHost, Org, Person


class Human:
    """A BottleCRM user clicking around: creates, edits, tags and deletes contacts."""

    def __init__(self, host: BottleCrmHost, person: Person):
        self.url, self.person = host.url, person
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {person.token}"

    def call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=30, **kw)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response.json() if response.content else None

    def add_contact(self, **fields: Any) -> str:
        fields.setdefault("first_name", "Pat")
        fields.setdefault("last_name", uuid.uuid4().hex[:6])
        return str(self.call("POST", "/api/contacts/", json=fields)["id"])

    def change(self, contact_id: str, **fields: Any) -> None:
        self.call("PATCH", f"/api/contacts/{contact_id}/", json=fields)

    def delete(self, contact_id: str) -> None:
        self.call("DELETE", f"/api/contacts/{contact_id}/")

    def add_lead(self, email: str, title: str = "By hand", **fields: Any) -> str:
        """A lead typed in by hand; the create answers no id, the email finds it."""
        self.call("POST", "/api/leads/", json={"title": title, "email": email,
                                               "status": "assigned", "source": "call", **fields})
        body = self.call("GET", "/api/leads/", params={"email": email})
        return str(body["open_leads"]["open_leads"][0]["id"])

    def convert_lead(self, lead_id: str) -> dict[str, Any]:
        """The lead board's "Convert": an account, a contact and an opportunity are made
        and the lead leaves every listing (``PATCH`` with status "converted")."""
        return dict(self.call("PATCH", f"/api/leads/{lead_id}/", json={"status": "converted"}))

    def tag(self, name: str) -> str:
        tags = self.call("GET", "/api/tags/")["tags"]
        found = next((t["id"] for t in tags if t["name"] == name), None)
        return str(found or self.call("POST", "/api/tags/", json={"name": name})["tag"]["id"])


def unique_email(prefix: str = "pat") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}@example.com"


def connector_for(host: BottleCrmHost, org: Org, who: str = "integration",
                  **settings: Any) -> BottleCrmConnector:
    """The connector as install leaves it: the integration user recorded from the host."""
    connector = BottleCrmConnector({"url": host.url, **settings},
                                   {"token": org.people[who].token}, limits=HostLimits())
    connector.settings.update(connector.discover_settings())
    connector.integration_user = connector.settings["integration_user_id"]
    return connector


class Counted:
    """Counts the requests a connector sends, by method and path pattern."""

    def __init__(self, connector: BottleCrmConnector):
        self.calls: list[tuple[str, str]] = []
        original = connector.http.request

        def request(method: str, url: str, **kw: Any) -> Any:
            self.calls.append((method, url))
            return original(method, url, **kw)

        connector.http.request = request  # type: ignore[method-assign]

    def reset(self) -> None:
        self.calls.clear()

    def __len__(self) -> int:
        return len(self.calls)

    def by_kind(self) -> Counter[str]:
        return Counter(f"{m} {u.split('?')[0]}" for m, u in self.calls)


# --- fixtures every real-host test module shares (registered in tests/conftest.py) ------
@pytest.fixture(scope="module")
def org(bottlecrm: BottleCrmHost) -> Org:
    """An organisation of the test module's own, so the feed and listings hold only its records."""
    return bottlecrm.new_org()


@pytest.fixture(scope="module")
def human(bottlecrm: BottleCrmHost, org: Org) -> Human:
    """The organisation's human admin, editing records in BottleCRM as a person would."""
    return Human(bottlecrm, org.people["admin"])
