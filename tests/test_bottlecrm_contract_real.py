"""The connector contract suite against the real BottleCRM, not only its fake.

Each test gets an organisation of its own (made in batches: starting Django costs seconds,
an organisation milliseconds). What the server cannot be asked to do (lose an answer,
throttle) a small loopback proxy in front of it does: the write still reaches the server,
only its answer is replaced, exactly as a dropped connection would. Everything else is
the server's own behaviour, and its tables are the truth for what was written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from crm_journeys.clock import Clock, VirtualClock
from crm_journeys.connectors.bottlecrm import BottleCrmConnector
from crm_journeys.connectors.contract import ConnectorContract, HostRefusalContract
from crm_journeys.connectors.http import HostLimits, sleep_on
from tests.bottlecrm_host import BottleCrmHost, Org
from tests.bottlecrm_people import Human

pytestmark = pytest.mark.bottlecrm
THROTTLED = "Request was throttled. Expected available in {} seconds."


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FaultProxy:
    """Forwards to the server; can lose a write's answer after the server made it, or
    answer as DRF's throttle does (429, ``Retry-After``)."""

    def __init__(self, target: str):
        self.target = target
        self.requests: list[tuple[str, str]] = []
        self.lose_write = False
        self.throttle: int | None = None  # seconds, once
        self.budget_spent = False
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True,
                                   request_handler=_Quiet)
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append((request.method, request.full_path.rstrip("?")))
        if self.budget_spent or self.throttle is not None:
            wait, self.throttle = (86400 if self.budget_spent else self.throttle), None
            body = {"detail": THROTTLED.format(wait)}
            return _json(body, 429, {"Retry-After": str(wait)})(environ, start_response)
        answer = requests.request(
            request.method, self.target + request.full_path.rstrip("?"),
            data=request.get_data(), timeout=60,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
        if self.lose_write and request.method in ("POST", "PATCH", "PUT", "DELETE"):
            self.lose_write = False
            return _json({"detail": "upstream connection reset"}, 502)(environ, start_response)
        return Response(answer.content, answer.status_code,
                        content_type=answer.headers.get("Content-Type"))(environ, start_response)


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    import json
    return Response(json.dumps(body), status, headers, content_type="application/json")


class RealHost:
    """``ContractHost`` over the real server: people act through its API with their own
    tokens, so the activity feed names them; the tables answer what was written."""

    def __init__(self, server: BottleCrmHost, org: Org, proxy: FaultProxy):
        self.server, self.org, self.proxy = server, org, proxy
        self.clock = VirtualClock(datetime.now(UTC))
        self.human = Human(server, org.people["admin"])
        self.bot = Human(server, org.people["integration"])

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.proxy.requests

    def add_contact(self, *, email: str, first_name: str, last_name: str,
                    tags: Any = ()) -> str:
        ref = self.human.add_contact(email=email, first_name=first_name, last_name=last_name)
        if tags:
            self.human.change(ref, tags=[self.human.tag(t) for t in tags])
        return ref

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        (self.bot if by_integration else self.human).change(external_id, **fields)
        if backdate:  # written late: its stamps say it happened earlier (on a real clock,
            # never before the contact's previous save, which was seconds ago)
            [(since,)] = self.server.sql(
                "SELECT extract(epoch FROM max(a.created_at) - min(p.created_at)) FROM activity a,"
                " (SELECT created_at FROM activity WHERE entity_id = :id ORDER BY created_at"
                " DESC LIMIT 2) p WHERE a.entity_id = :id", id=external_id)
            backdate = min(backdate, float(since) * 0.8)
            self.server.sql("UPDATE contacts SET updated_at = updated_at - make_interval("
                            "secs => :s) WHERE id = :id", s=backdate, id=external_id)
            self.server.sql("UPDATE activity SET created_at = created_at - make_interval("
                            "secs => :s) WHERE entity_id = :id AND created_at = (SELECT max("
                            "created_at) FROM activity WHERE entity_id = :id)",
                            s=backdate, id=external_id)

    def delete_contact(self, external_id: str) -> None:
        self.human.delete(external_id)

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        table, link, fk = (("lead", "lead_contacts", "lead_id") if kind == "lead"
                           else ("task", "task_contacts", "task_id"))
        rows = self.server.sql(
            f"SELECT r.id::text, l.contact_id::text, r.title FROM {table} r "  # noqa: S608
            f"LEFT JOIN {link} l ON l.{fk} = r.id WHERE r.org_id = :org "
            "AND r.description LIKE :key", org=self.org.id, key=f"%{key}%")
        return [{"id": r[0], "contact": r[1], "subject": r[2]} for r in rows]

    def contact_tags(self, external_id: str) -> set[str]:
        return {r[0] for r in self.server.sql(
            "SELECT t.name FROM contacts_tags ct JOIN tags t ON t.id = ct.tags_id "
            "WHERE ct.contact_id = :id", id=external_id)}

    def contact_value(self, external_id: str, field: str) -> Any:
        assert field.isidentifier()
        return self.server.sql(f"SELECT {field} FROM contacts WHERE id = :id",  # noqa: S608
                               id=external_id)[0][0]

    def lose_next_write_response(self) -> None:
        self.proxy.lose_write = True

    def rate_limit_next(self, retry_after: int) -> None:
        self.proxy.throttle = retry_after

    def exhaust_daily_budget(self) -> None:
        self.proxy.budget_spent = True


@pytest.fixture(scope="module")
def orgs(bottlecrm) -> Iterator[Iterator[Org]]:
    yield iter(bottlecrm.new_orgs(30))


@pytest.fixture
def host(bottlecrm, orgs) -> Iterator[RealHost]:
    proxy = FaultProxy(bottlecrm.url)
    try:
        yield RealHost(bottlecrm, next(orgs), proxy)
    finally:
        proxy.close()


@pytest.fixture
def connector(host: RealHost) -> BottleCrmConnector:
    person = host.org.people["integration"]
    return BottleCrmConnector({"url": host.proxy.url, "integration_user_id": person.user_id},
                              {"token": person.token}, clock=host.clock,
                              sleep=sleep_on(host.clock), limits=HostLimits())


class TestBottleCrmContractOnTheRealServer(ConnectorContract):
    pass


def test_the_proxy_is_transparent(host, connector):
    """The suite's faults come from the proxy; without one, answers pass through as sent."""
    ref = host.add_contact(email="plain@example.com", first_name="Plain", last_name="P")
    assert connector.fetch_contact(ref).email == "plain@example.com"
    assert ("GET", f"/api/contacts/{ref}/") in host.requests


# The refusal half of the suite names its people: an active salesperson sam@sales.example
# and a deactivated gone@sales.example. BottleCRM keeps one User per email across
# organisations and a Profile per organisation, so each test's org gets both as profiles.
TEAM_SCRIPT = r"""
from common.models import Org, Profile, User
for org_id in %(orgs)r:
    org = Org.objects.get(id=org_id)
    for email, name, active in [("sam@sales.example", "Sam Seller", True),
                                ("gone@sales.example", "Gus Gone", False)]:
        user, _ = User.objects.get_or_create(email=email, defaults={"name": name})
        Profile.objects.create(user=user, org=org, role="USER", is_active=active)
"""


class RealTeamHost(RealHost):
    """The real server with the suite's named salespeople; time is the real time (the
    created date of a contact is compared with it)."""

    def __init__(self, server: BottleCrmHost, org: Org, proxy: FaultProxy):
        super().__init__(server, org, proxy)
        self.clock = Clock()  # type: ignore[assignment]

    def forbid_owner_listing(self) -> None:
        """The integration profile demoted to USER on the team page: only admins list it."""
        self.server.sql("UPDATE profile SET role = 'USER' WHERE id = :id",
                        id=self.org.people["integration"].profile_id)


@pytest.fixture(scope="module")
def teams(bottlecrm) -> Iterator[Iterator[Org]]:
    made = bottlecrm.new_orgs(8)
    bottlecrm.shell(TEAM_SCRIPT % {"orgs": [o.id for o in made]})
    yield iter(made)


class TestBottleCrmRefusalsOnTheRealServer(HostRefusalContract):
    @pytest.fixture
    def host(self, bottlecrm, teams) -> Iterator[RealHost]:
        proxy = FaultProxy(bottlecrm.url)
        try:
            yield RealTeamHost(bottlecrm, next(teams), proxy)
        finally:
            proxy.close()

    @pytest.fixture
    def connector(self, host: RealHost) -> BottleCrmConnector:
        person = host.org.people["integration"]
        return BottleCrmConnector({"url": host.proxy.url, "integration_user_id": person.user_id},
                                  {"token": person.token}, limits=HostLimits())

    @pytest.fixture
    def refused_connector(self, host: RealHost) -> BottleCrmConnector:
        return BottleCrmConnector({"url": host.proxy.url}, {"token": "bcrm_pat_revoked0000"},
                                  limits=HostLimits())

    @pytest.fixture
    def unknown_owner(self) -> str:
        return "7c7c7c7c-3333-4f3f-9f3f-0000000000ff"  # shaped like a profile id, no one's
