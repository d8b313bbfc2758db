"""Email preview and test send over the REST API (the work is in ``web.common.email_preview``)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from crm_journeys.auth.accounts import Principal
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.schemas import In, Out
from crm_journeys.web.common.email_preview import preview, test_send
from crm_journeys.web.endpoint import endpoint

TAG = "journeys"


class PreviewIn(In):
    contact_id = fields.Integer(load_default=None, metadata={"description": "a contact of the mirror; a sample if absent"})


class TestSendIn(PreviewIn):
    to = fields.Email(load_default=None, metadata={"description": "where to send; the signed-in editor's address if absent"})


class PreviewOut(Out):
    to = fields.String()
    subject = fields.String()
    text = fields.String()
    html = fields.String()
    marketing = fields.Boolean()
    sent_to = fields.String()


@endpoint(api, "/journeys/<int:journey_id>/steps/<step_id>/preview", "POST", tag=TAG, permission="read",
          summary="The step's email rendered for a contact", body=PreviewIn, out=PreviewOut, extra_statuses=(404, 422))
def preview_email(principal: Principal, journey_id: int, step_id: str, body: dict[str, Any]) -> Any:
    return preview(principal, journey_id, step_id, body.get("contact_id"))


@endpoint(api, "/journeys/<int:journey_id>/steps/<step_id>/test-send", "POST", tag=TAG, permission="test",
          summary="Send the step's email once to yourself, marked as a test", body=TestSendIn, out=PreviewOut,
          extra_statuses=(404, 409, 422, 502))
def test_send_email(principal: Principal, journey_id: int, step_id: str, body: dict[str, Any]) -> Any:
    return test_send(principal, journey_id, step_id, body.get("contact_id"), body.get("to"))
