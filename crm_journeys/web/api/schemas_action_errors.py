"""marshmallow schemas of the action-errors endpoints (failed outbox rows, retry, dismiss);
apart from ``schemas`` to keep each module readable."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from crm_journeys.runtime.action_errors import DEAD, FILTER_STATUSES
from crm_journeys.web.api.schemas import MAX_ID, In, Out, PageQuery

MAX_IDS = 1000


class ActionErrorOut(Out):
    id = fields.Integer()
    status = fields.String(metadata={"description": "dead, retrying (pending after a failure), dismissed, "
                                                    "pending (queued again) or done"})
    action = fields.String()
    step = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(metadata={"description": "the last failure's message, as the host gave it"})
    params = fields.Dict(metadata={"description": "the action's parameters"})
    created_at = fields.DateTime(metadata={"description": "when the journey queued the action"})
    next_attempt_at = fields.DateTime(metadata={"description": "retrying: the next attempt; dead: when it "
                                                               "was given up"})
    instance_id = fields.Integer(allow_none=True)
    journey_id = fields.Integer(allow_none=True)
    journey_name = fields.String(allow_none=True)
    contact_id = fields.Integer()
    contact_email = fields.String(allow_none=True)


class ActionErrorQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(FILTER_STATUSES),
                           metadata={"description": "left out: dead and retrying"})
    journey_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    action = fields.String(validate=validate.Length(max=60))


class ActionErrorsIn(In):
    """Either ``ids``, or ``all_matching`` with an optional journey and action filter."""

    ids = fields.List(fields.Integer(validate=validate.Range(min=1, max=MAX_ID)),
                      validate=validate.Length(min=1, max=MAX_IDS),
                      metadata={"description": f"outbox row ids (at most {MAX_IDS})"})
    all_matching = fields.Boolean(load_default=False,
                                  metadata={"description": "every dead action the filter matches"})
    status = fields.String(validate=validate.Equal(DEAD), metadata={"description": "only dead actions move"})
    journey_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    action = fields.String(validate=validate.Length(max=60))

    @validates_schema
    def _one_scope(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("ids")) == bool(data.get("all_matching")):
            raise ValidationError("Give either ids or all_matching: true.", "ids")
        if data.get("ids") and any(k in data for k in ("status", "journey_id", "action")):
            raise ValidationError("A filter goes with all_matching, not with ids.", "ids")


class OutcomeOut(Out):
    changed = fields.List(fields.Integer(), metadata={"description": "ids moved"})
    count = fields.Integer(metadata={"description": "how many were moved"})
    refused = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "id -> why it was not moved (asked-for ids only)"})
