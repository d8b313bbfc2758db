"""Salesforce adapter: the contract, plus SOQL, composite, limits, against its fake."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_journeys.connectors.base import LeadSpec
from crm_journeys.connectors.contract import ConnectorContract, HostRefusalContract, drain
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.connectors.salesforce import SalesforceConnector, soql_id
from crm_journeys.errors import BudgetExhaustedError, FatalConnectorError
from tests.fakes.salesforce import API, FIELDS, INTEGRATION_USER, FakeSalesforce


@pytest.fixture
def host():
    with FakeSalesforce() as fake:
        yield fake


def make(host, **settings):
    return SalesforceConnector(
        {"integration_user_id": INTEGRATION_USER, "org_id": "00D000000000001", **settings},
        {"access_token": host.token, "instance_url": host.url},
        clock=host.clock, sleep=sleep_on(host.clock), limits=HostLimits())


@pytest.fixture
def connector(host):
    connector = make(host)
    connector.ensure_schema()
    return connector


class TestSalesforceContract(ConnectorContract):
    pass


def test_lead_is_one_composite_request_reading_the_contact(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    before = len(host.requests)
    result = connector.create_lead(ref, LeadSpec(title="t", description="d"), "k1")
    assert [p for _, p in host.requests[before:]] == [
        f"{API}/sobjects/Lead/CRM_Journeys_Key__c/k1?fields=Id", f"{API}/composite"]
    row = host.rows["Lead"][result.external_id]
    assert (row["FirstName"], row["LastName"], row["Email"], row["Company"]) == (
        "Ada", "Lovelace", "ada@example.com", "[not provided]")


def test_composite_failure_is_fatal_with_salesforces_message(host, connector):
    with pytest.raises(FatalConnectorError, match="NOT_FOUND"):
        connector.create_lead("003000000099999AAA", LeadSpec(title="t"), "k2")


def test_request_limit_exceeded_opens_the_circuit_for_the_cooloff(host):
    connector = make(host, budget_cooloff_minutes=30)
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    host.exhaust_daily_budget()
    with pytest.raises(BudgetExhaustedError, match="REQUEST_LIMIT_EXCEEDED") as info:
        connector.fetch_contact(ref)
    assert info.value.retry_after == pytest.approx(1800)
    host.advance(1801)
    host.daily_limit = None
    assert connector.fetch_contact(ref) is not None


def test_limit_info_header_is_read(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    connector.fetch_contact(ref)
    used, limit = connector.api_usage
    assert limit == 15000 and used >= 1


def test_keyset_paging_survives_many_changes_in_one_second(host, connector):
    ids = [host.add_contact(email=f"p{i}@example.com", first_name="P", last_name=str(i))
           for i in range(7)]
    _, cursor, _ = drain(connector, None, 2)
    host.advance(10)
    for ref in ids:  # all inside one second: ties broken by Id
        host.change_contact(ref, first_name="Q")
    contacts, _, pages = drain(connector, cursor, 2)
    assert sorted(c.external_id for c in contacts) == sorted(ids) and pages == 4


def test_unknown_field_is_fatal(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with pytest.raises(FatalConnectorError, match="INVALID_FIELD: No such column 'Shoe__c'"):
        connector.update_fields(ref, {"Shoe__c": 44}, "k")


def test_missing_custom_fields_are_named(host, connector, monkeypatch):
    monkeypatch.setitem(FIELDS, "Event", FIELDS["Event"] - {"CRM_Journeys_Key__c"})
    with pytest.raises(FatalConnectorError, match="Event.CRM_Journeys_Key__c"):
        connector.ensure_schema()


def test_ids_are_checked_before_they_reach_soql():
    assert soql_id("003000000000001AAA")
    with pytest.raises(FatalConnectorError):
        soql_id("x' OR Name != '")


def test_event_times(host, connector):
    from crm_journeys.connectors.base import ActivitySpec
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    spec = ActivitySpec("appointment", "Demo", datetime(2026, 3, 5, 14, 0, tzinfo=UTC),
                        duration_minutes=45)
    connector.create_activity(ref, spec, "k-ev")
    row = host.written("appointment", "k-ev")[0]["row"]
    assert (row["StartDateTime"], row["EndDateTime"]) == ("2026-03-05T14:00:00Z",
                                                          "2026-03-05T14:45:00Z")


class TestSalesforceRefusals(HostRefusalContract):
    @pytest.fixture
    def refused_connector(self, host):
        return SalesforceConnector({"org_id": "00D000000000001"},
                                   {"access_token": "00Dexpired!session", "instance_url": host.url},
                                   clock=host.clock, sleep=sleep_on(host.clock),
                                   limits=HostLimits())

    @pytest.fixture
    def unknown_owner(self):
        return "005000000000999AAA"


def test_owners_follow_next_records_url_past_a_batch(host, connector):
    for i in range(2100):
        uid = f"005{900000000 + i:012d}AAA"
        host.rows["User"][uid] = {"Id": uid, "Name": f"Rep {i:04d}", "Email": f"r{i}@x.example",
                                  "IsActive": True, "UserType": "Standard", "IsDeleted": False}
    owners = connector.list_owners()
    assert len(owners) == 2103  # three seeded active users and 2,100 more
    assert len({o.id for o in owners}) == 2103
    assert any("/query/01g" in path for _, path in host.requests)


def test_an_inactive_owner_is_refused(host, connector):
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    with pytest.raises(FatalConnectorError, match="INACTIVE_OWNER_OR_USER"):
        connector.update_fields(ref, {"owner": "005000000000004AAA"}, "k")
