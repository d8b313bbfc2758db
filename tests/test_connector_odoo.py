"""Odoo adapter over JSON-2 and over JSON-RPC: the contract, plus Odoo's own ways."""

from __future__ import annotations

import pytest

from crm_journeys.connectors.base import ActivitySpec, LeadSpec
from crm_journeys.connectors.contract import ConnectorContract, HostRefusalContract
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.connectors.odoo import OdooConnector
from crm_journeys.errors import FatalConnectorError
from tests.fakes.odoo import DB, LOGIN, FakeOdoo


@pytest.fixture
def host():
    with FakeOdoo() as fake:
        yield fake


def make(host, version=19, **settings):
    return OdooConnector({"url": host.url, "database": DB, "version": version, "login": LOGIN,
                          **settings},
                         {"api_key": host.token},
                         clock=host.clock, sleep=sleep_on(host.clock), limits=HostLimits())


class TestOdooJson2Contract(ConnectorContract):
    @pytest.fixture
    def connector(self, host):
        return make(host)


class TestOdooJsonRpcContract(ConnectorContract):
    @pytest.fixture
    def connector(self, host):
        return make(host, version=17)


def test_json2_sends_the_key_as_a_bearer_and_names_the_database(host):
    connector = make(host)
    ref = host.add_contact(email="a@example.com", first_name="Ada", last_name="Lovelace")
    assert connector.fetch_contact(ref).last_name == "Lovelace"
    assert ("POST", "/json/2/res.partner/read") in host.requests
    assert not any(path == "/jsonrpc" for _, path in host.requests)


def test_jsonrpc_authenticates_once_and_maps_errors(host):
    connector = make(host, version=17)
    ref = host.add_contact(email="a@example.com", first_name="Ada", last_name="Lovelace")
    with pytest.raises(FatalConnectorError, match="ValueError: Invalid field 'shoe_size'") as info:
        connector.update_fields(ref, {"shoe_size": 44}, "k")
    assert info.value.status == 422
    assert connector.uid == 7


def test_wrong_api_key_over_jsonrpc_is_fatal(host):
    connector = OdooConnector({"url": host.url, "database": DB, "version": 16, "login": LOGIN},
                              {"api_key": "wrong-key-123456"}, clock=host.clock,
                              sleep=sleep_on(host.clock), limits=HostLimits())
    with pytest.raises(FatalConnectorError, match="refused"):
        connector.fetch_contact("1")


def test_finished_activity_is_not_recreated(host):
    connector = make(host)
    ref = host.add_contact(email="a@example.com", first_name="Ada", last_name="Lovelace")
    spec = ActivitySpec("task", "Call back", host.now())
    first = connector.create_activity(ref, spec, "k-done")
    # the salesperson marks it done: Odoo deletes the activity and posts its note
    activity = host.tables["mail.activity"].pop(int(first.external_id))
    host.call("res.partner", "message_post", {"ids": [int(ref)], "body": activity["note"]}, 2)
    again = connector.create_activity(ref, spec, "k-done")
    assert not again.created and host.tables["mail.activity"] == {}


def test_lead_and_names(host):
    connector = make(host)
    ref = host.add_contact(email="a@example.com", first_name="Ada King", last_name="Lovelace")
    connector.create_lead(ref, LeadSpec(title="Upsell", value=99.5), "k-l")
    [lead] = host.written("lead", "k-l")
    assert lead["row"]["expected_revenue"] == 99.5 and lead["row"]["type"] == "lead"
    contact = connector.fetch_contact(ref)
    assert (contact.first_name, contact.last_name) == ("Ada King", "Lovelace")
    connector.update_fields(ref, {"last_name": "Byron"}, "k-n")
    assert host.tables["res.partner"][int(ref)]["name"] == "Ada King Byron"


def test_tag_picker_lists_categories(host):
    host.add_contact(email="a@example.com", first_name="A", last_name="B", tags=["vip", "b2b"])
    assert make(host).picker_values("tags") == ["b2b", "vip"]


class TestOdooJson2Refusals(HostRefusalContract):
    @pytest.fixture
    def connector(self, host):
        return make(host)

    @pytest.fixture
    def refused_connector(self, host):
        return OdooConnector({"url": host.url, "database": DB, "version": 19, "login": LOGIN},
                             {"api_key": "revoked-key-0000"}, clock=host.clock,
                             sleep=sleep_on(host.clock), limits=HostLimits())

    @pytest.fixture
    def unknown_owner(self):
        return "999"


class TestOdooJsonRpcRefusals(TestOdooJson2Refusals):
    @pytest.fixture
    def connector(self, host):
        return make(host, version=17)

    @pytest.fixture
    def refused_connector(self, host):
        return OdooConnector({"url": host.url, "database": DB, "version": 17, "login": LOGIN},
                             {"api_key": "revoked-key-0000"}, clock=host.clock,
                             sleep=sleep_on(host.clock), limits=HostLimits())


def test_portal_and_archived_users_are_not_owners(host):
    names = [o.name for o in make(host).list_owners()]
    assert names == ["Journeys Integration", "Mitchell Admin", "Sam Seller"]


def test_an_owner_email_is_refused_before_anything_is_written(host):
    connector = make(host)
    ref = host.add_contact(email="a@example.com", first_name="A", last_name="B")
    spec = ActivitySpec("task", "Call", host.clock.now(), owner="sam@sales.example")
    with pytest.raises(FatalConnectorError, match="publish the journey again"):
        connector.create_activity(ref, spec, "k-email-owner")
    assert host.written("task", "k-email-owner") == []


# --- the email opt-out: Odoo's mail.blacklist (is_blacklisted is computed from it) ---
def _blacklist(host):
    return [(r["email"], r["active"]) for r in host.tables["mail.blacklist"].values()]


@pytest.mark.parametrize("version", [19, 17])
def test_opt_out_adds_the_address_to_the_mail_blacklist_once(host, version):
    connector = make(host, version=version)
    ref = host.add_contact(email="Bo@Example.com", first_name="Bo", last_name="C")
    result = connector.update_fields(ref, {"email_opt_out": True, "phone": "+331"}, "k-bl-1")
    assert _blacklist(host) == [("bo@example.com", True)]
    assert "added bo@example.com to Odoo's mail blacklist" in result.detail
    assert host.contact_value(ref, "phone") == "+331"  # the other fields by the normal write
    assert "email_opt_out" not in host.tables["res.partner"][int(ref)]  # never as a partner field
    assert connector.fetch_contact(ref).fields["email_opt_out"] is True  # is_blacklisted follows
    again = connector.update_fields(ref, {"email_opt_out": True}, "k-bl-1")  # a retry or repeat
    assert _blacklist(host) == [("bo@example.com", True)]
    assert "already in" in again.detail


def test_opt_in_archives_the_row_and_a_new_opt_out_restores_it(host):
    connector = make(host)
    ref = host.add_contact(email="cy@example.com", first_name="Cy", last_name="D")
    connector.update_fields(ref, {"email_opt_out": True}, "k-on")
    off = connector.update_fields(ref, {"email_opt_out": False}, "k-off")
    assert _blacklist(host) == [("cy@example.com", False)]
    assert "removed" in off.detail
    assert "email_opt_out" not in connector.fetch_contact(ref).fields
    assert "not in" in connector.update_fields(ref, {"email_opt_out": False}, "k-off").detail
    assert _blacklist(host) == [("cy@example.com", False)]  # a repeat changes nothing
    connector.update_fields(ref, {"email_opt_out": True}, "k-on-again")
    assert _blacklist(host) == [("cy@example.com", True)]  # the archived row, not a second one
    assert connector.fetch_contact(ref).fields["email_opt_out"] is True


def test_an_address_blacklisted_in_odoo_is_archived_once_not_duplicated(host):
    connector = make(host)
    host.blacklist("dee@example.com", active=False)  # archived earlier in Odoo
    ref = host.add_contact(email="DEE@example.com", first_name="Dee", last_name="E")
    connector.update_fields(ref, {"email_opt_out": True}, "k-dee")
    assert _blacklist(host) == [("dee@example.com", True)]


def test_opt_out_of_a_partner_without_email_is_fatal(host):
    connector = make(host)
    ref = host.add_contact(email="eve@example.com", first_name="Eve", last_name="F")
    host.change_contact(ref, email=False)
    with pytest.raises(FatalConnectorError, match="no email address"):
        connector.update_fields(ref, {"email_opt_out": True}, "k-eve")
    assert _blacklist(host) == []


def test_fake_blacklist_keeps_one_row_per_address(host):
    """Odoo's create hands back the existing row; the unique constraint bites on a write."""
    first = host.call("mail.blacklist", "create", {"vals_list": [{"email": "Fa@example.com"}]}, 7)
    assert host.call("mail.blacklist", "create", {"vals_list": [{"email": "fa@EXAMPLE.com"}]}, 7) == first
    [other] = host.call("mail.blacklist", "create", {"vals_list": [{"email": "gi@example.com"}]}, 7)
    from tests.fakes.odoo import OdooError
    with pytest.raises(OdooError, match="already exists"):
        host.call("mail.blacklist", "write", {"ids": [other], "vals": {"email": "FA@example.com"}}, 7)
