"""HubSpot adapter: the contract, plus what only HubSpot does, against its fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_journeys.connectors.contract import ConnectorContract, HostRefusalContract, drain
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.connectors.hubspot import HubSpotConnector
from crm_journeys.errors import BudgetExhaustedError, FatalConnectorError
from tests.fakes.hubspot import APP_ID, CLIENT_SECRET, FakeHubSpot


@pytest.fixture
def host():
    with FakeHubSpot() as fake:
        yield fake
        assert fake.spec_violations == []


def make(host, **settings):
    connector = HubSpotConnector(
        {"base_url": host.url, "app_id": str(APP_ID), "portal_id": "62515", **settings},
        {"access_token": host.token, "client_secret": CLIENT_SECRET},
        clock=host.clock, sleep=sleep_on(host.clock), limits=HostLimits())
    connector.ensure_schema()
    return connector


@pytest.fixture
def connector(host):
    return make(host)


class TestHubSpotContract(ConnectorContract):
    pass


def test_schema_is_created_once(host):
    connector = make(host)
    assert connector.ensure_schema() == []
    assert host.props["tasks"]["crm_journeys_key"]["hasUniqueValue"] is True
    assert host.props["contacts"]["crm_journeys_tags"]["hasUniqueValue"] is False


def test_activities_are_upserted_by_id_property(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    from crm_journeys.connectors.base import ActivitySpec
    spec = ActivitySpec("appointment", "Demo", datetime(2026, 3, 5, 14, 0, tzinfo=UTC),
                        duration_minutes=45)
    connector.create_activity(ref, spec, "k1")
    assert ("POST", "/crm/v3/objects/meetings/batch/upsert") in host.requests
    meeting = host.written("appointment", "k1")[0]["properties"]
    assert meeting["hs_meeting_start_time"] == "2026-03-05T14:00:00Z"
    assert meeting["hs_meeting_end_time"] == "2026-03-05T14:45:00Z"


def test_validation_error_is_fatal_with_hubspots_message(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with pytest.raises(FatalConnectorError) as info:
        connector.update_fields(ref, {"shoe_size": "44"}, "k")
    assert info.value.status == 400 and 'Property \\"shoe_size\\" does not exist' in str(info.value)


def test_daily_limit_resets_at_midnight_in_the_account_time_zone(host):
    connector = make(host, time_zone="America/New_York")  # 09:00 UTC is 04:00 in New York
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    host.exhaust_daily_budget()
    with pytest.raises(BudgetExhaustedError) as info:
        connector.fetch_contact(ref)
    assert info.value.retry_after == pytest.approx(20 * 3600, abs=10)


def test_search_restarts_past_the_ten_thousand_hit_window(host, connector):
    ids = [host.add_contact(email=f"p{i}@example.com", first_name="P", last_name=str(i))
           for i in range(8)]
    _, cursor, _ = drain(connector, None, 3)
    host.advance(10)
    for ref in ids:
        host.change_contact(ref, first_name="Q")
        host.advance(1)
    connector.search_cap = 6  # as if 10,000
    contacts, _, _ = drain(connector, cursor, 3)
    assert sorted(c.external_id for c in contacts) == sorted(ids)


def test_webhook_uri_is_decoded_as_hubspot_signs_it(host, connector):
    from crm_journeys.connectors.contract import WebhookReceiver
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with WebhookReceiver(host.clock) as receiver:
        host.emit_webhook(receiver.url + "?tenant=t%3A1", ref)
        request = receiver.received[-1]
    connector.verify_webhook(request)
    [hint] = connector.parse_webhook(request)
    assert (hint.object_type, hint.change, hint.properties) == (
        "contact", "property_change", {"firstname": "Ada"})


def test_search_sends_what_the_spec_requires(host, connector):
    host.add_contact(email="a@example.com", first_name="A", last_name="B")
    _, cursor, _ = drain(connector, None, 3)
    host.advance(timedelta(seconds=5).total_seconds())
    drain(connector, cursor, 3)
    assert ("POST", "/crm/v3/objects/contacts/search") in host.requests


class TestHubSpotRefusals(HostRefusalContract):
    @pytest.fixture
    def refused_connector(self, host):
        return HubSpotConnector({"base_url": host.url, "portal_id": "62515"},
                                {"access_token": "pat-na1-revoked"}, clock=host.clock,
                                sleep=sleep_on(host.clock), limits=HostLimits())

    @pytest.fixture
    def unknown_owner(self):
        return "99999999"


def test_owner_list_needs_its_scope_and_says_so(host, connector):
    host.scopes.discard("crm.objects.owners.read")
    with pytest.raises(FatalConnectorError, match="lacks a scope.*needs: crm.objects.owners.read"):
        connector.list_owners()


def test_owners_are_paged_and_the_user_id_is_not_the_owner_id(host, connector):
    host.owners += [{"id": str(50000000 + i), "email": f"rep{i}@sales.example",
                     "firstName": "Rep", "lastName": str(i), "userId": 7000 + i,
                     "archived": False} for i in range(230)]
    owners = connector.list_owners()
    assert len(owners) == 232
    assert sum(1 for m, p in host.requests if p.startswith("/crm/v3/owners")) == 3
    sam = next(o for o in owners if o.email == "sam@sales.example")
    assert (sam.id, sam.name) == ("41629779", "Sam Seller")
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with pytest.raises(FatalConnectorError, match="INVALID_OWNER_ID"):
        connector.update_fields(ref, {"owner": "9586504"}, "k")  # Sam's userId, not his owner id


def test_a_second_contact_with_the_same_email_is_a_conflict(host, connector):
    first = host.add_contact(email="ada@example.com", first_name="A", last_name="B")
    other = host.add_contact(email="other@example.com", first_name="O", last_name="C")
    with pytest.raises(FatalConnectorError, match=f"Contact already exists. Existing ID: {first}"):
        connector.update_fields(other, {"email": "ADA@example.com"}, "k")
    assert host.contact_value(other, "email") == "other@example.com"


def test_a_read_only_property_is_refused_in_hubspots_words(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with pytest.raises(FatalConnectorError, match="READ_ONLY_VALUE"):
        connector.update_fields(ref, {"createdate": "2020-01-01"}, "k")


# --- email opt-out: hs_email_optout is read-only, the v4 preferences API unsubscribes ---
UNSUB = "/communication-preferences/v4/statuses/{}/unsubscribe-all"


def test_opt_out_unsubscribes_the_address_from_all_email_and_patches_the_rest(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="A", last_name="B")
    result = connector.update_fields(ref, {"email_opt_out": True, "first_name": "Ada"}, "k")
    assert host.unsubscribed_from_all("ada@example.com")
    assert host.contact_value(ref, "first_name") == "Ada"  # the other field went by PATCH
    assert "unsubscribed ada@example.com from all email" in result.detail
    assert connector.fetch_contact(ref).fields["email_opt_out"] is True  # HubSpot set its flag
    connector.update_fields(ref, {"email_opt_out": True}, "k")  # a retry leaves it so
    assert host.unsubscribed_from_all("ada@example.com")


def test_resubscribe_calls_nothing_and_says_why(host, connector):
    ref = host.add_contact(email="bo@example.com", first_name="B", last_name="C")
    calls = len(host.requests)
    result = connector.update_fields(ref, {"email_opt_out": False}, "k")
    assert host.requests[calls:] == []
    assert "HubSpot keeps the opt-out" in result.detail and "preferences page" in result.detail


def test_unsubscribe_all_as_hubspot_answers_it(host):
    import requests

    url = host.url + UNSUB.format("cy@example.com")
    auth = {"Authorization": f"Bearer {host.token}"}
    assert requests.get(url, headers=auth, timeout=5).json()["results"] == []  # not opted out yet
    assert requests.post(url, params={"channel": "EMAIL"}, timeout=5).status_code == 401
    missing = requests.post(url, headers=auth, timeout=5)
    assert missing.status_code == 400 and missing.json()["category"] == "VALIDATION_ERROR"
    done = requests.post(url, params={"channel": "EMAIL"}, headers=auth, timeout=5)
    assert done.status_code == 200 and done.json()["status"] == "COMPLETE"
    [status] = requests.get(url, headers=auth, timeout=5).json()["results"]
    assert (status["channel"], status["status"], status["subscriberIdString"]) == (
        "EMAIL", "UNSUBSCRIBED", "cy@example.com")


def test_unsubscribe_outage_is_retriable_not_fatal(host, connector):
    from crm_journeys.errors import RetriableConnectorError

    ref = host.add_contact(email="di@example.com", first_name="D", last_name="E")
    host.inject(503, {"status": "error", "message": "Service Unavailable"}, times=10,
                when=lambda r: r.path.endswith("/unsubscribe-all"))
    with pytest.raises(RetriableConnectorError):
        connector.update_fields(ref, {"email_opt_out": True}, "k")
    assert not host.unsubscribed_from_all("di@example.com")


def test_unsubscribe_of_a_contact_gone_from_hubspot_is_fatal(host, connector):
    ref = host.add_contact(email="ed@example.com", first_name="E", last_name="F")
    host.delete_contact(ref)
    with pytest.raises(FatalConnectorError):
        connector.update_fields(ref, {"email_opt_out": True}, "k")


def test_unsubscribe_without_the_preferences_scope_says_which_scope_to_grant(host, connector):
    """An account that did not grant the optional scope at install: the write-back is
    refused, not retried for ever, and the outbox row names the scope to add."""
    ref = host.add_contact(email="fi@example.com", first_name="F", last_name="G")
    host.scopes.discard("communication_preferences.read_write")
    with pytest.raises(FatalConnectorError, match="communication_preferences.read_write"):
        connector.update_fields(ref, {"email_opt_out": True}, "k")
    assert not host.unsubscribed_from_all("fi@example.com")


def test_the_install_asks_for_the_preferences_scope_as_optional():
    """Required scopes an account cannot grant would stop the whole install; the
    preferences scope is asked with ``optional_scope``."""
    from urllib.parse import parse_qs, urlsplit

    from crm_journeys.connectors.oauth import OAuthClient, hubspot_app

    url = OAuthClient(hubspot_app(), "client", "secret").authorization_url("https://x.example/cb", "st")
    query = parse_qs(urlsplit(url).query)
    assert query["optional_scope"] == ["communication_preferences.read_write"]
    assert "communication_preferences.read_write" not in query["scope"][0]
