"""What happens to contacts, over the API: events in, the journey trigger, contacts,
instances with their timelines, analytics, and the sandbox CRM's records."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.auth.accounts import Principal
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.normalise import EventError, normalise
from crm_journeys.services import queries
from crm_journeys.storage.models import Journey
from crm_journeys.web.access import Access
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.intake import EventIntake
from crm_journeys.web.api.schemas import (
    AnalyticsOut,
    ContactDetailOut,
    ContactOut,
    ContactQuery,
    EventIn,
    EventOut,
    InstanceDetailOut,
    InstanceOut,
    InstanceQuery,
    RecordOut,
    RecordQuery,
    TriggerIn,
)
from crm_journeys.web.endpoint import Page, endpoint, page_window
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

SECRET_HEADER = "X-Journey-Secret"
INTAKE = "crm_journeys.event_intake"


def _event_from(body: dict[str, Any]) -> IncomingEvent:
    """The inbox event a body describes, normalised exactly as ``simulate`` does."""
    try:
        return normalise(type_=body.get("type"), name=body.get("name"), contact=dict(body["contact"]),
                         properties=dict(body["properties"]), key=body.get("key"),
                         occurred_at=body.get("occurred_at"), event_id=body.get("id"))
    except EventError as exc:
        raise ApiError(422, "invalid_request", "The event cannot be accepted.", exc.errors) from exc


def _custom_trigger(session: Any, tenant_id: int, body: dict[str, Any]) -> IncomingEvent:
    """A declared custom trigger: its attributes are checked against the declaration."""
    from crm_journeys.errors import DefinitionError
    from crm_journeys.integrations.custom import validated_event

    name = str(body.get("key") or body.get("name") or "")
    try:
        return validated_event(session, tenant_id, name, dict(body["contact"]), dict(body["properties"]),
                               f"api:{body['id']}" if body.get("id") else None)
    except DefinitionError as exc:
        raise ApiError(422, "invalid_request", "The event does not fit its custom trigger.", exc.errors) from exc


def _event_for(orm: Callable[[], Session], tenant_id: int, body: dict[str, Any]) -> IncomingEvent:
    """The event a valid body describes (``orm`` gives a session for a custom trigger's lookup)."""
    if body.get("type") == "custom_trigger":
        return _custom_trigger(orm(), tenant_id, body)
    return _event_from(body)


@api.record_once
def _attach_intake(setup: BlueprintSetupState) -> None:
    """One group-committing intake per application (``web/api/intake.py``)."""
    setup.app.extensions[INTAKE] = EventIntake(setup.app.extensions["crm_journeys"].db, _event_for)


@endpoint(api, "/events", "POST", summary="Send an event (a named custom event or a canonical type)",
          tag="events", permission="events", body=EventIn, out=EventOut, status=202, defer_access=True,
          description="The contact is identified by email or by the CRM's id. An `id` makes a repeat harmless.")
def post_event(access: Access, load: Callable[[], dict[str, Any]]) -> Any:
    """The hot path of machine senders: concurrent requests share one transaction (token
    check and insert); each is answered after that transaction committed. The body is
    validated once the token is known (``web/api/intake.py``)."""
    new, event = current_app.extensions[INTAKE].submit(access, lambda: load()["body"], state().runtime.clock.now())
    return {"accepted": new, "duplicate": not new, "type": event.type, "key": event.key}


@endpoint(api, "/journeys/<int:journey_id>/trigger", "POST", summary="Add a contact through the journey's API trigger",
          tag="events", permission=None, body=TriggerIn, out=EventOut, status=202,
          description=f"Authenticated by the journey's trigger secret in the {SECRET_HEADER} header.")
def trigger_journey(journey_id: int, body: dict[str, Any]) -> Any:
    given = request.headers.get(SECRET_HEADER, "")
    with state().db.unit_of_work() as s:
        journey = s.scalar(select(Journey).where(Journey.id == journey_id))
        if journey is None or not given or not hmac.compare_digest(journey.trigger_secret, given):
            raise ApiError(401, "unauthorized", f"Send the journey's trigger secret in {SECRET_HEADER}.")
        if journey.status != "live":  # a draft, paused or archived journey would drop the contact
            raise ApiError(409, "journey_not_live",
                           f"The journey is {journey.status}; only a live journey takes contacts.")
        event = IncomingEvent(type="journey_api_call", contact=dict(body["contact"]), key=str(journey.id),
                              properties={"journey": str(journey.id), "payload": body["payload"]},
                              dedup_key=f"trigger:{journey.id}:{body['id']}" if body.get("id") else None)
        new = ingest(s, journey.tenant_id, event, state().runtime.clock.now())
    return {"accepted": new, "duplicate": not new, "type": event.type, "key": event.key}


@endpoint(api, "/contacts", "GET", summary="Contacts the journeys know (the CRM mirror)", tag="contacts",
          query=ContactQuery, out=ContactOut, many=True)
def list_contacts(principal: Principal, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        return Page(queries.contacts(s, principal.tenant_id, email=query.get("email"), limit=limit, offset=offset),
                    queries.count_contacts(s, principal.tenant_id, email=query.get("email")), page, limit)


@endpoint(api, "/contacts/<int:contact_id>", "GET", summary="A contact with its journeys and timeline (why each branch)",
          tag="contacts", out=ContactDetailOut)
def get_contact(principal: Principal, contact_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return queries.contact_detail(s, principal.tenant_id, contact_id)


@endpoint(api, "/journeys/<int:journey_id>/instances", "GET", summary="Contacts in a journey", tag="instances",
          query=InstanceQuery, out=InstanceOut, many=True)
def list_instances(principal: Principal, journey_id: int, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        queries.journey(s, principal.tenant_id, journey_id)
        rows = queries.instance_rows(s, principal.tenant_id, journey_id=journey_id, status=query.get("status"),
                                     limit=limit, offset=offset)
        return Page(rows, queries.count_instances(s, principal.tenant_id, journey_id=journey_id,
                                                  status=query.get("status")), page, limit)


@endpoint(api, "/instances/<int:instance_id>", "GET", summary="One contact's run with its timeline",
          tag="instances", out=InstanceDetailOut)
def get_instance(principal: Principal, instance_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return queries.instance_detail(s, principal.tenant_id, instance_id)


@endpoint(api, "/journeys/<int:journey_id>/analytics", "GET", summary="Counts per journey and per step, funnel, lateness",
          tag="analytics", out=AnalyticsOut)
def journey_analytics(principal: Principal, journey_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return queries.analytics(s, principal.tenant_id, journey_id)


@endpoint(api, "/sandbox/records", "GET", summary="Leads, tasks, calls and emails in the built-in sandbox CRM",
          tag="contacts", query=RecordQuery, out=RecordOut, many=True)
def sandbox_records(principal: Principal, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        return Page(queries.sandbox_records(s, principal.tenant_id, kind=query.get("kind"), limit=limit,
                                            offset=offset),
                    queries.count_sandbox_records(s, principal.tenant_id, kind=query.get("kind")), page, limit)
