"""A host CRM that refuses leads until someone fixes it, for the action-errors tests: the
embedded sandbox CRM with a failure switch on ``create_lead``, and a journey that makes
one lead per form submission."""

from __future__ import annotations

from typing import Any

from crm_journeys.connectors.sandbox import SandboxConnector
from crm_journeys.errors import FatalConnectorError

LEAD_JOURNEY: dict[str, Any] = {
    "format_version": 1, "name": "Lead on form", "entry": {"policy": "every_time"},
    "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "demo"}}],
    "first_step": "lead",
    "steps": [{"id": "lead", "type": "action", "action": "create_lead",
               "params": {"title": "Demo request"}, "next": None, "run_multiple_times": True}],
}


def missing_property() -> FatalConnectorError:
    """What HubSpot answers a create without a property the portal made required."""
    return FatalConnectorError('400: Property values were not valid: [{"name":"lifecyclestage",'
                               '"error":"REQUIRED_FIELD"}] <b>fix the form</b>', 400)


class RefusingHost:
    """While ``failure`` is set, ``create_lead`` raises it; with ``write_first`` the host
    writes the lead before failing (a timeout after the host committed). ``calls`` counts
    the creates that reached the host."""

    def __init__(self, monkeypatch: Any):
        self.failure: Exception | None = None
        self.write_first = False
        self.calls = 0
        real = SandboxConnector.create_lead

        def create_lead(connector: SandboxConnector, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.failure is None:
                return real(connector, *args, **kwargs)
            if self.write_first:
                real(connector, *args, **kwargs)
            raise self.failure

        monkeypatch.setattr(SandboxConnector, "create_lead", create_lead)
