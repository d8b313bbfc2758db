"""BottleCRM adapter: the contract, the activity feed and its overrun, against its fake."""

from __future__ import annotations

import pytest

from crm_journeys.connectors.base import ActivitySpec, LeadSpec
from crm_journeys.connectors.bottlecrm import BottleCrmConnector
from crm_journeys.connectors.contract import ConnectorContract, HostRefusalContract, drain
from crm_journeys.connectors.cursor import SyncState
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.errors import BudgetExhaustedError, FatalConnectorError
from tests.fakes.bottlecrm import GONE_PROFILE, INTEGRATION_USER, SALES_PROFILE, FakeBottleCrm


@pytest.fixture
def host():
    with FakeBottleCrm() as fake:
        yield fake
        assert fake.spec_violations == []


def make(host, **settings):
    return BottleCrmConnector({"url": host.url, "integration_user_id": INTEGRATION_USER["id"],
                               **settings}, {"token": host.token},
                              clock=host.clock, sleep=sleep_on(host.clock), limits=HostLimits())


@pytest.fixture
def connector(host):
    return make(host)


class TestBottleCrmContract(ConnectorContract):
    pass


class TestBottleCrmRefusals(HostRefusalContract):
    @pytest.fixture
    def refused_connector(self, host):
        return BottleCrmConnector({"url": host.url}, {"token": "bcrm_pat_revoked0000"},
                                  clock=host.clock, sleep=sleep_on(host.clock),
                                  limits=HostLimits())

    @pytest.fixture
    def unknown_owner(self):
        return "7c7c7c7c-3333-4f3f-9f3f-0000000000ff"  # shaped like a profile id, no one's


def test_a_deactivated_salesperson_is_refused_before_the_task_is_written(host, connector):
    """The server would drop the assignee and still answer 200: an unassigned task."""
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    spec = ActivitySpec("task", "Call Ada", host.now(), owner=GONE_PROFILE)
    with pytest.raises(FatalConnectorError, match="no active user"):
        connector.create_activity(ref, spec, "k-gone")
    assert host.written("task", "k-gone") == []


def test_owners_are_read_once_then_again_when_someone_new_is_named(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    for i, owner in enumerate(["sam@sales.example", SALES_PROFILE, "SAM@sales.example"]):
        connector.create_activity(ref, ActivitySpec("task", f"T{i}", host.now(), owner=owner),
                                  f"k-{i}")
        assert host.written("task", f"k-{i}")[0]["row"]["_assigned"] == [SALES_PROFILE]
    assert sum(1 for r in host.requests if r[1].startswith("/api/users/")) == 1
    host.inactive.add(SALES_PROFILE)  # Sam leaves: after a while the list is read again
    host.advance(11 * 60)
    with pytest.raises(FatalConnectorError, match="no active user sam@sales.example"):
        connector.create_activity(ref, ActivitySpec("task", "T9", host.now(),
                                                    owner="sam@sales.example"), "k-9")


def test_an_overrun_feed_falls_back_to_a_full_scan(host, connector):
    ids = [host.add_contact(email=f"p{i}@example.com", first_name="P", last_name=str(i))
           for i in range(5)]
    _, cursor, _ = drain(connector, None, 10)
    host.advance(600)
    host.change_contact(ids[2], first_name="Lost in the noise")
    for i in range(60):  # more than the feed's 50 entries, none about ids[2]
        host.change_contact(ids[0], last_name=f"noise {i}")
        host.advance(1)
    contacts, cursor, _ = drain(connector, cursor, 10)
    assert {c.external_id for c in contacts} == {ids[0], ids[2]}
    assert ("GET", "/api/contacts/?offset=0&limit=10") in host.requests
    host.advance(60)
    host.change_contact(ids[4], first_name="Back on the feed")
    again, _, _ = drain(connector, cursor, 10)
    assert [c.external_id for c in again] == [ids[4]]
    assert SyncState.decode(cursor).phase == "feed"


def test_lead_is_found_again_by_title_email_and_marker(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    other = host.add_contact(email="bob@example.com", first_name="Bob", last_name="B")
    theirs = connector.create_lead(other, LeadSpec(title="Welcome"), "k-bob")
    ours = connector.create_lead(ref, LeadSpec(title="Welcome", value=10), "k-ada")
    assert ours.created and ours.external_id != theirs.external_id
    row = host.leads[ours.external_id]
    assert (row["email"], row["opportunity_amount"], row["source"]) == (
        "ada@example.com", "10.00", "other")


def test_appointment_becomes_a_task_with_a_note(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    spec = ActivitySpec("appointment", "Demo", host.now())
    connector.create_activity(ref, spec, "k-demo")
    [task] = host.written("appointment", "k-demo")
    assert task["row"]["description"].startswith("Appointment at ")


def test_validation_error_is_fatal_with_the_field_errors(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    with pytest.raises(FatalConnectorError, match="not-an-email") as info:
        connector.update_fields(ref, {"email": "not-an-email"}, "k")
    assert info.value.status == 400
    assert len(host.spec_violations) == 1  # refused at the door, as the server would
    host.spec_violations.clear()


def test_daily_throttle_opens_the_circuit(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    host.exhaust_daily_budget()
    with pytest.raises(BudgetExhaustedError) as info:
        connector.fetch_contact(ref)
    assert info.value.retry_after == 86400


def test_a_contact_with_a_lead_keeps_it(host, connector):
    """One lead per email per organisation (the server's rule): found, not dead-lettered."""
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    theirs = host.add_lead(ref, title="By hand")
    result = connector.create_lead(ref, LeadSpec(title="Welcome"), "k-1")
    assert (result.external_id, result.created) == (theirs, False)
    assert len(host.leads) == 1


def test_a_converted_lead_is_reported_not_created_again(host, connector):
    """A converted lead leaves the lead list but keeps its email: the create is refused,
    and the step says what the host holds instead of dead-lettering the 400."""
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    theirs = host.add_lead(ref, title="By hand")
    host.convert_lead(theirs)
    result = connector.create_lead(ref, LeadSpec(title="Welcome"), "k-1")
    assert (result.external_id, result.created) == (theirs, False)
    assert result.detail.startswith("lead 'By hand' was already converted to account "
                                    "'Ada Lovelace' by ")
    assert "not created again" in result.detail
    assert len(host.leads) == 1


def test_a_lead_made_while_ours_was_sent_is_kept(host, connector):
    """A person's lead lands between our look and our create: theirs is found, not a 400."""
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    post, made = connector.http.post, []

    def racing_post(url, **kw):
        made.append(host.add_lead(ref, title="By hand"))
        return post(url, **kw)

    connector.http.post = racing_post
    result = connector.create_lead(ref, LeadSpec(title="Welcome"), "k-1")
    assert (result.external_id, result.created) == (made[0], False)
    assert result.detail == "the contact already has a lead (one per email in BottleCRM)"


def test_a_refused_lead_with_no_lead_holding_the_email_stays_refused(host, connector):
    """The host's 400 stands when no lead, open or converted, explains it."""
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    host.inject(400, {"error": True, "errors": {"opportunity_amount": ["Too many digits."]}},
                when=lambda r: r.method == "POST" and r.path == "/api/leads/")
    with pytest.raises(FatalConnectorError, match="Too many digits") as info:
        connector.create_lead(ref, LeadSpec(title="Welcome"), "k-1")
    assert info.value.status == 400 and host.leads == {}


def test_leads_get_the_boards_first_status(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    result = connector.create_lead(ref, LeadSpec(title="Welcome"), "k-1")
    assert host.leads[result.external_id]["status"] == "assigned"


def test_unknown_fields_are_refused_before_any_request(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    before = len(host.requests)
    with pytest.raises(FatalConnectorError, match="no field 'score'"):
        connector.update_fields(ref, {"score": 10}, "k")
    assert len(host.requests) == before


def test_tags_are_matched_by_slug(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace",
                           tags=["VIP"])
    other = host.add_contact(email="bob@example.com", first_name="Bob", last_name="B")
    assert connector.add_tag(other, "vip", "k").detail == "changed"
    assert host.contact_tags(other) == host.contact_tags(ref) == {"VIP"}
    assert len(host.tags) == 1


def test_feed_survives_deleted_editors_and_deactivations(host, connector):
    ref = host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    _, cursor, _ = drain(connector, None, 10)
    host.advance(5)
    host.deactivate_contact(ref)
    host.forget_editors()
    changed, _, _ = drain(connector, cursor, 10)
    assert [(c.external_id, c.deleted, c.echo) for c in changed] == [(ref, True, False)]


def test_a_member_token_is_refused_at_install_with_the_reason(host):
    member = BottleCrmConnector({"url": host.url + "/api"}, {"token": host.member_token},
                                limits=HostLimits())
    with pytest.raises(FatalConnectorError, match="role is USER"):
        member.discover_settings()
