"""Each host's own email opt-out, read as the canonical ``email_opt_out`` field and (where
the host takes it) written back, against the hosts' fakes."""

from __future__ import annotations

import pytest

from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.test_connector_dynamics import host as dynamics_host  # noqa: F401  (fixtures)
from tests.test_connector_dynamics import make as make_dynamics
from tests.test_connector_hubspot import make as make_hubspot
from tests.test_connector_salesforce import make as make_salesforce


@pytest.fixture
def salesforce():  # type: ignore[no-untyped-def]
    with FakeSalesforce() as fake:
        yield fake


@pytest.fixture
def hubspot():  # type: ignore[no-untyped-def]
    with FakeHubSpot() as fake:
        yield fake


def test_salesforce_has_opted_out_of_email(salesforce):
    connector = make_salesforce(salesforce)
    connector.ensure_schema()
    ref = salesforce.add_contact(email="ada@example.com", first_name="Ada", last_name="L")
    assert "email_opt_out" not in connector.fetch_contact(ref).fields  # the host says nothing yet
    connector.update_fields(ref, {"email_opt_out": True}, idempotency_key="k1")
    assert salesforce.rows["Contact"][ref]["HasOptedOutOfEmail"] is True
    assert connector.fetch_contact(ref).fields["email_opt_out"] is True


def test_dataverse_donotbulkemail(dynamics_host):  # noqa: F811
    connector = make_dynamics(dynamics_host)
    connector.ensure_schema()
    ref = dynamics_host.add_contact(email="bo@example.com", first_name="Bo", last_name="K")
    connector.update_fields(ref, {"email_opt_out": True}, idempotency_key="k1")
    assert dynamics_host.rows["contacts"][ref]["donotbulkemail"] is True
    assert connector.fetch_contact(ref).fields["email_opt_out"] is True


def test_hubspot_hs_email_optout_is_read(hubspot):
    connector = make_hubspot(hubspot)
    ref = hubspot.add_contact(email="cy@example.com", first_name="Cy", last_name="D")
    hubspot.objects["contacts"][ref]["properties"]["hs_email_optout"] = "true"  # set by HubSpot itself
    assert connector.fetch_contact(ref).fields["email_opt_out"] is True


def test_odoo_mail_blacklist_is_read():
    from tests.fakes.odoo import FakeOdoo
    from tests.test_connector_odoo import make as make_odoo

    with FakeOdoo() as odoo:
        connector = make_odoo(odoo)
        ref = odoo.add_contact(email="di@example.com", first_name="Di", last_name="E")
        assert "email_opt_out" not in connector.fetch_contact(ref).fields
        odoo.blacklist("Di@Example.com")  # Odoo's mail blacklist has the address; is_blacklisted is computed
        assert connector.fetch_contact(ref).fields["email_opt_out"] is True
