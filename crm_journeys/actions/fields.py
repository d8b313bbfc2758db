"""Set a contact field, or add score points to a numeric field, in the connected CRM.

Not reported idempotent: a field write re-run after a crash could overwrite a later row's
value (and a score re-read from a refreshed mirror would count twice), so the outbox
closes these rows one by one.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema

FIELD_NAME = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", error="use letters, digits and _")


def _emit_fields(ctx: ActionContext, values: dict[str, Any]) -> None:
    from crm_journeys.runtime.ingest import IncomingEvent

    ctx.emit(IncomingEvent(type="fields_updated", contact={"id": ctx.contact.external_id},
                           properties={"fields": values}, dedup_key=f"fields:{ctx.idempotency_key}"))


class UpdateFieldParamsSchema(ParamsSchema):
    field = fields.String(required=True, validate=FIELD_NAME, metadata={"label": "Field", "picker": "fields"})
    value = fields.Raw(required=True, allow_none=True, metadata={"label": "New value"})


class UpdateField(Action[dict[str, Any]]):
    name, label, params_schema = "update_field", "Update contact field", UpdateFieldParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        values = {params["field"]: params["value"]}
        result = ctx.connector.update_fields(ctx.contact_ref, values, idempotency_key=ctx.idempotency_key)
        _emit_fields(ctx, values)
        summary = f"set {params['field']} = {params['value']!r}"
        if result.detail and result.detail != f"updated {sorted(values)}":
            summary += f" ({result.detail})"  # what the host did instead, e.g. HubSpot's kept opt-out
        return ActionResult.done(summary, result.external_id)


class AssignScoreParamsSchema(ParamsSchema):
    points = fields.Integer(required=True, validate=validate.Range(-10000, 10000),
                            metadata={"label": "Points (negative to subtract)"})
    field = fields.String(load_default="score", validate=FIELD_NAME, metadata={"label": "Score field"})


class AssignScore(Action[dict[str, Any]]):
    """Adds to the score the mirror holds; a retry reads the same mirror, so it sets the
    same total and the host's idempotent update leaves it unchanged."""

    name, label, params_schema = "assign_score", "Assign score points", AssignScoreParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        current = ctx.contact.fields.get(params["field"]) or 0
        try:
            total = float(current) + params["points"]
        except (TypeError, ValueError):
            total = float(params["points"])
        total_value: Any = int(total) if total.is_integer() else total
        values = {params["field"]: total_value}
        result = ctx.connector.update_fields(ctx.contact_ref, values, idempotency_key=ctx.idempotency_key)
        _emit_fields(ctx, values)
        return ActionResult.done(f"{params['field']} {current} -> {total_value}", result.external_id)
