"""marshmallow schemas of the workspace setup endpoints: saved segments, custom-trigger
declarations and integration settings; apart from ``schemas`` to keep each module readable."""

from __future__ import annotations

from marshmallow import fields, validate

from crm_journeys.integrations.custom import TYPES
from crm_journeys.services.saved_segments import NAME_MAX
from crm_journeys.web.api.schemas import In, Out

_CONDITION = {"description": "an AND/OR condition, as in journeys: {\"all\": [...]}, {\"any\": [...]}, "
                             "{\"not\": {...}} or one test {\"op\", \"field\", \"value\"}"}


class JourneyUseOut(Out):
    journey_id = fields.Integer()
    name = fields.String()
    status = fields.String()
    published = fields.Boolean(metadata={"description": "the live version names it (false: the draft only)"})


class SegmentIn(In):
    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    condition = fields.Dict(keys=fields.String(), required=True, metadata=_CONDITION)


class SegmentUpdateIn(In):
    condition = fields.Dict(keys=fields.String(), required=True, metadata=_CONDITION)


class SegmentOut(Out):
    id = fields.Integer()
    name = fields.String()
    condition = fields.Dict()
    summary = fields.String(metadata={"description": "the condition in plain words"})
    member_count = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    used_by = fields.List(fields.Nested(JourneyUseOut))


class AttributeIn(In):
    name = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(TYPES))
    required = fields.Boolean(load_default=False)


class AttributeOut(Out):
    name = fields.String()
    type = fields.String()
    required = fields.Boolean()


class CustomTriggerIn(In):
    name = fields.String(required=True, metadata={"description": "lowercase letters, digits and _"})
    attributes = fields.List(fields.Nested(AttributeIn), load_default=list)


class CustomTriggerUpdateIn(In):
    attributes = fields.List(fields.Nested(AttributeIn), required=True)


class CustomTriggerOut(Out):
    id = fields.Integer()
    name = fields.String()
    attributes = fields.List(fields.Nested(AttributeOut))
    created_at = fields.DateTime()
    used_by = fields.List(fields.Nested(JourneyUseOut))
    example_event = fields.Dict(metadata={"description": "a body for POST /api/events that fires it"})


class IntegrationSettingOut(Out):
    name = fields.String()
    label = fields.String()
    secret = fields.Boolean()
    generated = fields.Boolean(metadata={"description": "made by rotation here (else the service gives it)"})
    is_set = fields.Boolean()
    value = fields.String(allow_none=True, metadata={"description": "non-secret settings only"})


class IntegrationOut(Out):
    service = fields.String()
    label = fields.String()
    hook_url = fields.String(metadata={"description": "the URL to paste into the service"})
    events = fields.String()
    where = fields.String()
    settings = fields.List(fields.Nested(IntegrationSettingOut))
    last_used_at = fields.DateTime(allow_none=True, metadata={"description": "last delivery accepted (minutes)"})


class IntegrationUpdateIn(In):
    settings = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), required=True,
                           metadata={"description": "setting name -> value; empty or null removes it"})


class SecretRotateIn(In):
    setting = fields.String(metadata={"description": "which secret (the service's own by default)"})


class SecretOut(Out):
    service = fields.String()
    setting = fields.String()
    secret = fields.String(metadata={"description": "the new secret; shown only in this response"})
