"""Put the contact into another journey (its 'manual add' starting point)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema


class AddToJourneyParamsSchema(ParamsSchema):
    journey_id = fields.Integer(required=True, validate=validate.Range(min=1),
                                metadata={"label": "Journey", "picker": "journeys"})


class AddToJourney(Action[dict[str, Any]]):
    name, label, params_schema = "add_to_journey", "Add to another journey", AddToJourneyParamsSchema

    @classmethod
    def host(cls, raw_params: dict[str, Any]) -> str:
        return "local"  # emits an event; no host to wait for

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        from crm_journeys.runtime.ingest import IncomingEvent

        ctx.emit(IncomingEvent(type="manual_add", key=str(params["journey_id"]),
                               contact={"id": ctx.contact.external_id},
                               dedup_key=f"add:{ctx.idempotency_key}"))
        return ActionResult.done(f"added to journey {params['journey_id']}", idempotent=True)  # only a de-duplicated event
