"""marshmallow In/Out schemas of the REST API: strict input (unknown fields are errors),
separate output shapes. ``openapi.py`` turns them into the OpenAPI components."""

from __future__ import annotations

import json
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from crm_journeys.definition.durations import parse_duration

MAX_PAGE = 10**9  # page * per_page stays far below 2**63
MAX_ID = 2**63 - 1


class In(Schema):
    class Meta:
        unknown = RAISE


class Out(Schema):
    pass


def _duration(value: str) -> None:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class ErrorOut(Out):
    code = fields.String(required=True)
    status = fields.Integer(required=True)
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)


# --- journeys ---------------------------------------------------------------------------

def _draft_limits(document: dict[str, Any]) -> None:
    """A draft may be incomplete, never unbounded: its name fits the column, its size a page."""
    from crm_journeys.definition.checks import check_size
    from crm_journeys.errors import DefinitionError

    name = document.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise ValidationError({"name": ["must be text of at most 200 characters"]})
    if len(json.dumps(document, default=str)) > MAX_DRAFT_BYTES:
        raise ValidationError([f"must be at most {MAX_DRAFT_BYTES // 1024} KB of JSON"])
    try:
        check_size(document)
    except DefinitionError as exc:
        raise ValidationError(exc.errors) from None


MAX_DRAFT_BYTES = 512 * 1024


class JourneyCreateIn(In):
    name = fields.String(validate=validate.Length(min=1, max=200))
    document = fields.Dict(keys=fields.String(), validate=_draft_limits)
    template = fields.String(validate=validate.Length(min=1))

    @validates_schema
    def _one_source(self, data: dict[str, Any], **_: Any) -> None:
        if "document" in data and "template" in data:
            raise ValidationError("give a document or a template, not both", "template")


class JourneyUpdateIn(In):
    document = fields.Dict(keys=fields.String(), required=True, validate=_draft_limits)


class PublishIn(In):
    migration = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class CountsOut(Out):
    entered = fields.Integer()
    waiting = fields.Integer()
    completed = fields.Integer()
    exited = fields.Integer()
    goal_reached = fields.Integer()


class JourneySummaryOut(Out):
    id = fields.Integer()
    name = fields.String()
    status = fields.String()
    version = fields.Integer(allow_none=True, metadata={"description": "live version number"})
    updated_at = fields.DateTime()
    counts = fields.Nested(CountsOut)


class JourneyOut(JourneySummaryOut):
    created_at = fields.DateTime()
    draft = fields.Dict()
    draft_errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                               metadata={"description": "what still blocks publishing, by JSON path"})
    unpublished_changes = fields.Boolean()
    trigger_path = fields.String(metadata={"description": "POST here with X-Journey-Secret to add a contact"})
    trigger_secret = fields.String(allow_none=True, metadata={"description": "shown to editors and admins only"})
    moved = fields.Dict(keys=fields.String(), values=fields.Integer(),
                        metadata={"description": "after publishing: contacts moved to the new version, per old step"})


class VersionOut(Out):
    id = fields.Integer()
    version = fields.Integer()
    active = fields.Boolean()
    published_at = fields.DateTime()
    document = fields.Dict()


class DiffQuery(In):
    from_ = fields.String(data_key="from", required=True,
                          metadata={"description": "a version number or 'draft'"})
    to = fields.String(load_default="draft", metadata={"description": "a version number or 'draft'"})


class ChangeOut(Out):
    path = fields.String()
    change = fields.String(metadata={"description": "added, removed or changed"})
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)


class DiffOut(Out):
    from_ = fields.String(data_key="from")
    to = fields.String()
    changes = fields.List(fields.Nested(ChangeOut))


# --- test mode --------------------------------------------------------------------------

class SimContactIn(In):
    email = fields.Email(required=True)
    first_name = fields.String(load_default="")
    last_name = fields.String(load_default="")
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), load_default=dict)
    tags = fields.List(fields.String(), load_default=list)
    groups = fields.List(fields.String(), load_default=list)


class SimEventIn(In):
    after = fields.String(required=True, validate=_duration,
                          metadata={"description": "ISO 8601 duration after the start, e.g. P1D"})
    type = fields.String(required=True)
    key = fields.String(load_default="")
    properties = fields.Dict(keys=fields.String(), load_default=dict)


class SimulateIn(In):
    contact = fields.Nested(SimContactIn, required=True)
    starting_point = fields.String(metadata={"description": "id of the starting point (the first by default)"})
    events = fields.List(fields.Nested(SimEventIn), load_default=list)
    horizon = fields.String(load_default="P30D", validate=_duration)


class TimelineOut(Out):
    at = fields.DateTime()
    step = fields.String()
    kind = fields.String()
    branch = fields.String()
    why = fields.String()
    rule = fields.String()
    facts = fields.Raw()
    instance_id = fields.Integer()


class SimActionOut(Out):
    step = fields.String()
    action = fields.String()
    status = fields.String()
    summary = fields.String()
    at = fields.DateTime()


class RecordOut(Out):
    id = fields.Integer()
    kind = fields.String()
    contact_email = fields.String(allow_none=True)
    data = fields.Dict()
    created_at = fields.DateTime()


class SimulateOut(Out):
    status = fields.String(metadata={"description": "active, completed, exited, or not_entered"})
    step = fields.String(allow_none=True)
    outcome = fields.String()
    timeline = fields.List(fields.Nested(TimelineOut))
    actions = fields.List(fields.Nested(SimActionOut))
    records = fields.List(fields.Nested(RecordOut))


class BacktestIn(In):
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=365))


class BacktestOut(Out):
    id = fields.String()
    journey_id = fields.Integer()
    status = fields.String(metadata={"description": "running, done or failed"})
    processed = fields.Integer()
    total = fields.Integer()
    progress = fields.Float()
    error = fields.String()
    result = fields.Dict(allow_none=True)


# --- activity ---------------------------------------------------------------------------

class StepStatsOut(Out):
    id = fields.String()
    label = fields.String()
    type = fields.String()
    entered = fields.Integer()
    waiting = fields.Integer()
    exited = fields.Integer()
    branches = fields.Dict(keys=fields.String(), values=fields.Integer())
    lateness_p50_ms = fields.Integer(allow_none=True)
    lateness_p99_ms = fields.Integer(allow_none=True)


class FunnelOut(Out):
    label = fields.String()
    count = fields.Integer()
    depth = fields.Integer(metadata={"description": "0 totals, 1 main path, deeper down branches"})
    step = fields.String(allow_none=True)
    branch = fields.String(allow_none=True, metadata={"description": "set on a branch row (yes, no, case, path)"})


class AnalyticsOut(Out):
    journey_id = fields.Integer()
    counts = fields.Nested(CountsOut)
    steps = fields.List(fields.Nested(StepStatsOut))
    funnel = fields.List(fields.Nested(FunnelOut))
    goals = fields.Dict(keys=fields.String(), values=fields.Integer())


class InstanceOut(Out):
    id = fields.Integer()
    journey_id = fields.Integer()
    version = fields.Integer()
    contact_id = fields.Integer()
    contact_email = fields.String(allow_none=True)
    status = fields.String()
    step = fields.String(allow_none=True)
    outcome = fields.String()
    entered_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)


class InstanceDetailOut(InstanceOut):
    timeline = fields.List(fields.Nested(TimelineOut))


class PageQuery(In):
    page = fields.Integer(validate=[validate.Range(min=1), validate.Range(max=MAX_PAGE)], metadata={"description": "page number, from 1"})
    per_page = fields.Integer(validate=validate.Range(min=1, max=1000),
                              metadata={"description": "items per page (default 100)"})


class ListQuery(PageQuery):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000),
                           metadata={"description": "older form of per_page"})
    offset = fields.Integer(load_default=0, validate=[validate.Range(min=0), validate.Range(max=MAX_PAGE * 1000)],
                            metadata={"description": "older form of page"})


class InstanceQuery(ListQuery):
    status = fields.String(validate=validate.OneOf(["active", "completed", "exited"]))


class ContactQuery(ListQuery):
    email = fields.String()


class ContactOut(Out):
    id = fields.Integer()
    external_id = fields.String()
    email = fields.String(allow_none=True)
    fields_ = fields.Dict(data_key="fields", attribute="fields")
    tags = fields.List(fields.String())
    groups = fields.List(fields.String())
    updated_at = fields.DateTime()


class ContactDetailOut(ContactOut):
    instances = fields.List(fields.Nested(InstanceOut))
    timeline = fields.List(fields.Nested(TimelineOut))


class RecordQuery(ListQuery):
    kind = fields.String(validate=validate.OneOf(["lead", "task", "phone_call", "appointment", "email", "order"]))


class IdentityIn(In):
    email = fields.Email()
    id = fields.String(validate=validate.Length(min=1, max=120))

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("email") and not data.get("id"):
            raise ValidationError("identify the contact by email or id", "email")


class EventIn(In):
    name = fields.String(validate=validate.Length(min=1, max=200),
                         metadata={"description": "a custom event name (type custom_event)"})
    type = fields.String(metadata={"description": "an event type (see /api/catalog: events and record_events)"})
    key = fields.String(metadata={"description": "routing key; read from the property the type names "
                                                 "(tag for tag_added) when left out"})
    contact = fields.Nested(IdentityIn, required=True)
    properties = fields.Dict(keys=fields.String(), load_default=dict)
    id = fields.String(validate=validate.Length(min=1, max=180),
                       metadata={"description": "your id for the event: a repeat is ignored"})
    occurred_at = fields.AwareDateTime()

    @validates_schema
    def _name_or_type(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("name")) == bool(data.get("type")):
            raise ValidationError("give either a custom event name or a canonical type", "type")


class EventOut(Out):
    accepted = fields.Boolean()
    duplicate = fields.Boolean()
    type = fields.String()
    key = fields.String()


class TriggerIn(In):
    contact = fields.Nested(IdentityIn, required=True)
    payload = fields.Dict(keys=fields.String(), load_default=dict)
    id = fields.String(validate=validate.Length(min=1, max=180))


class TemplateOut(Out):
    id = fields.String()
    name = fields.String()
    description = fields.String()
    configure = fields.List(fields.String(), metadata={"description": "JSON paths the author must set"})
