"""Dynamics 365 adapter: the contract, plus change tracking and SendEmail, against its fake."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_journeys.connectors.base import ActivitySpec, EmailSpec, LeadSpec
from crm_journeys.connectors.contract import (
    ConnectorContract,
    HostRefusalContract,
    WebhookReceiver,
    drain,
)
from crm_journeys.connectors.dynamics import DynamicsConnector
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.errors import BudgetExhaustedError, FatalConnectorError, WebhookRejected
from tests.fakes.dynamics import INTEGRATION_USER, WEBHOOK_SECRET, FakeDynamics


@pytest.fixture
def host():
    with FakeDynamics() as fake:
        yield fake


def make(host, **settings):
    return DynamicsConnector(
        {"environment_url": host.url, "integration_user_id": INTEGRATION_USER, **settings},
        {"access_token": host.token, "webhook_secret": WEBHOOK_SECRET},
        clock=host.clock, sleep=sleep_on(host.clock), limits=HostLimits())


@pytest.fixture
def connector(host):
    connector = make(host)
    connector.ensure_schema()
    return connector


class TestDynamicsContract(ConnectorContract):
    pass


def test_initial_listing_asks_for_change_tracking_and_ends_on_a_delta_link(host, connector):
    host.add_contact(email="a@example.com", first_name="A", last_name="B")
    page = connector.sync_page(None, page_size=10)
    assert page.done
    from crm_journeys.connectors.cursor import SyncState
    assert "$deltatoken=" in SyncState.decode(page.cursor).token


def test_changes_during_the_initial_listing_come_with_the_first_delta(host, connector):
    ids = [host.add_contact(email=f"p{i}@example.com", first_name="P", last_name=str(i))
           for i in range(4)]
    first = connector.sync_page(None, page_size=2)
    host.change_contact(ids[0], first_name="Moved")  # already delivered, changed mid-scan
    rest, cursor, _ = drain(connector, first.cursor, 2)
    changes, _, _ = drain(connector, cursor, 2)
    assert [(c.external_id, c.first_name) for c in changes] == [(ids[0], "Moved")]


def test_lead_is_created_with_the_alternate_key_and_the_contact(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    result = connector.create_lead(ref, LeadSpec(title="Journey lead", value=120.0), "k/1'x")
    [lead] = host.written("lead", "k/1'x")
    assert lead["id"] == result.external_id and result.created
    assert (lead["row"]["lastname"], lead["row"]["estimatedamount"]) == ("Lovelace", 120.0)


def test_send_email_sends_once(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    mail = EmailSpec(subject="Hi", html="<p>Hi</p>", text="Hi")
    host.lose_next_write_response()  # the create is committed, its answer lost
    first = connector.send_email(ref, mail, "k-send")
    again = connector.send_email(ref, mail, "k-send")
    [email] = host.written("email", "k-send")
    assert email["row"]["statecode"] == 1 and first.detail == "sent"
    assert again.detail == "already sent" and again.external_id == first.external_id


def test_unknown_column_is_fatal_with_the_dataverse_message(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with pytest.raises(FatalConnectorError, match="no field 'shoesize'.*0x80060888: Invalid property 'shoesize'"):
        connector.update_fields(ref, {"shoesize": 44}, "k")


def test_update_never_recreates_a_deleted_contact(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    host.delete_contact(ref)
    with pytest.raises(FatalConnectorError) as info:
        connector.update_fields(ref, {"first_name": "Z"}, "k")
    assert info.value.status == 404


def test_long_service_protection_wait_opens_the_circuit(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    host.exhaust_daily_budget()
    with pytest.raises(BudgetExhaustedError) as info:
        connector.fetch_contact(ref)
    assert info.value.retry_after == pytest.approx(300)


def test_webhook_key_in_the_query_string_is_accepted(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with WebhookReceiver(host.clock) as receiver:
        host.emit_webhook(f"{receiver.url}?code={WEBHOOK_SECRET}", ref, forged=True)
        request = receiver.received[-1]
    connector.verify_webhook(request)  # the header is wrong, but the code is right
    [hint] = connector.parse_webhook(request)
    assert (hint.change, hint.properties) == ("updated", {"firstname": "Ada"})
    request.headers.pop("X-Crmj-Secret", None)
    with pytest.raises(WebhookRejected):
        make(host, webhook_max_age_seconds=-1).verify_webhook(request)


def test_missing_alternate_key_is_named(host, connector, monkeypatch):
    monkeypatch.setattr(host, "entity_keys", lambda resource: __import__(
        "tests.fakes.base", fromlist=["json_response"]).json_response({"value": []}))
    with pytest.raises(FatalConnectorError, match="crmj_journeyskey on: lead, task"):
        connector.ensure_schema()


class TestDynamicsRefusals(HostRefusalContract):
    @pytest.fixture
    def refused_connector(self, host):
        return DynamicsConnector({"environment_url": host.url}, {"access_token": "eyJ.expired"},
                                 clock=host.clock, sleep=sleep_on(host.clock), limits=HostLimits())

    @pytest.fixture
    def unknown_owner(self):
        return "8d7b1a52-0000-4000-8000-0000000ff999"


def test_application_users_are_not_offered_as_owners(host, connector):
    owners = connector.list_owners()
    assert INTEGRATION_USER not in {o.id for o in owners}
    assert [o.name for o in owners] == ["Sam Seller", "Kim Closer"]


def test_a_disabled_owner_is_refused(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    spec = ActivitySpec("task", "Call", datetime(2026, 3, 5, 9, tzinfo=UTC),
                        owner="8d7b1a52-0000-4000-8000-00000000d004")
    with pytest.raises(FatalConnectorError, match="is disabled"):
        connector.create_activity(ref, spec, "k-disabled")
    assert host.written("task", "k-disabled") == []
