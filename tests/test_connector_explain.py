"""The sentences host refusals become: what to fix first, the host's own words after."""

from __future__ import annotations

from crm_journeys.connectors import dynamics, hubspot, odoo, salesforce
from crm_journeys.connectors.explain import explain


def test_an_empty_401_body_still_says_what_to_do():
    text = explain(dynamics.HINTS, 401, "")
    assert text.startswith("Dynamics 365 refused the credentials: the Entra ID token")
    assert not text.endswith("()")


def test_salesforce_budget_403_is_not_called_a_permission_problem():
    said = "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
    assert explain(salesforce.HINTS, 403, said) == said


def test_unknown_fields_are_named_in_each_hosts_wording():
    cases = [
        (hubspot.HINTS, 'Property values were not valid: [{"isValid": false, "message": '
                        '"Property \\"score\\" does not exist", "error": "PROPERTY_DOESNT_EXIST"}]',
         "score"),
        (salesforce.HINTS, "INVALID_FIELD: No such column 'Score__c' on sobject of type Contact",
         "Score__c"),
        (dynamics.HINTS, "0x80060888: Invalid property 'score' was found in entity "
                         "'Microsoft.Dynamics.CRM.contact'.", "score"),
        (odoo.HINTS, "odoo write: ValueError: Invalid field 'score' on model 'res.partner'",
         "score"),
    ]
    for hints, said, field in cases:
        text = explain(hints, 400, said)
        assert f"has no field {field!r}" in text and text.endswith(f"({said})"), text


def test_other_refusals_keep_the_hosts_words():
    assert explain(hubspot.HINTS, 409, "Contact already exists. Existing ID: 7") == \
        "Contact already exists. Existing ID: 7"
