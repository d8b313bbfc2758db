"""Workspace setup over the REST API: saved segments and custom-trigger declarations
(viewers read, editors and admins write) and the inbound integrations' settings and
secrets (admins only). Another tenant's id is a 404; a name taken or a delete refused
because published journeys depend on it is a 409; a bad condition or attribute a 422 whose
``errors`` name the field (``condition.all[0].value``, ``attributes[1].name``).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from sqlalchemy.orm import Session

from crm_journeys.auth.accounts import Principal
from crm_journeys.errors import DefinitionError
from crm_journeys.services import integration_secrets, saved_segments
from crm_journeys.services import trigger_declarations as declared
from crm_journeys.services.condition_words import describe
from crm_journeys.services.usage import InUse, NameTaken, Use, uses, uses_by_name
from crm_journeys.storage.journey_models import CustomTrigger, Segment
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.schemas import ContactOut, PageQuery
from crm_journeys.web.api.schemas_setup import (
    CustomTriggerIn,
    CustomTriggerOut,
    CustomTriggerUpdateIn,
    IntegrationOut,
    IntegrationUpdateIn,
    SecretOut,
    SecretRotateIn,
    SegmentIn,
    SegmentOut,
    SegmentUpdateIn,
)
from crm_journeys.web.endpoint import Page, endpoint, page_window
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

_DELETED = {"type": "object", "properties": {"deleted": {"type": "integer"}}}


def _invalid(what: str, exc: DefinitionError) -> ApiError:
    return ApiError(422, "invalid_request", f"The {what} is not valid.", exc.errors)


def _in_use(code: str, exc: InUse) -> ApiError:
    return ApiError(409, code, str(exc), {"journeys": [u.label() for u in exc.journeys]})


def _used(rows: list[Use]) -> list[dict[str, Any]]:
    return [{"journey_id": u.journey_id, "name": u.name, "status": u.status, "published": u.published}
            for u in rows]


# --- segments ---------------------------------------------------------------------------

def segment_out(row: Segment, used: list[Use]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "condition": row.condition, "summary": describe(row.condition),
            "member_count": row.member_count, "created_at": row.created_at, "updated_at": row.updated_at,
            "used_by": _used(used)}


def _segment(s: Session, principal: Principal, row: Segment) -> dict[str, Any]:
    return segment_out(row, uses(s, principal.tenant_id, "segment", row.name))


@endpoint(api, "/segments", "GET", summary="Saved segments with their member counts", tag="segments",
          query=PageQuery, out=SegmentOut, many=True)
def list_segments(principal: Principal, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        rows = saved_segments.segments(s, principal.tenant_id, limit=limit, offset=offset)
        used = uses_by_name(s, principal.tenant_id, "segment")
        return Page([segment_out(r, used.get(r.name, [])) for r in rows],
                    saved_segments.count_segments(s, principal.tenant_id), page, limit)


@endpoint(api, "/segments", "POST", summary="Create a segment; its members are found at once", tag="segments",
          permission="edit", body=SegmentIn, out=SegmentOut, status=201,
          description="409 `segment_exists` when the name is taken.")
def create_segment(principal: Principal, body: dict[str, Any]) -> Any:
    try:
        with state().db.unit_of_work() as s:
            row = saved_segments.create(s, principal.tenant_id, body["name"], body["condition"],
                                        state().runtime.clock.now())
            return _segment(s, principal, row)
    except DefinitionError as exc:
        raise _invalid("segment", exc) from None
    except NameTaken as exc:
        raise ApiError(409, "segment_exists", str(exc), {"name": [str(exc)]}) from None


@endpoint(api, "/segments/<int:segment_id>", "GET", summary="A segment", tag="segments", out=SegmentOut)
def get_segment(principal: Principal, segment_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return _segment(s, principal, saved_segments.segment(s, principal.tenant_id, segment_id))


@endpoint(api, "/segments/<int:segment_id>", "PUT", summary="Change a segment's condition (members rebuilt)",
          tag="segments", permission="edit", body=SegmentUpdateIn, out=SegmentOut)
def update_segment(principal: Principal, segment_id: int, body: dict[str, Any]) -> Any:
    try:
        with state().db.unit_of_work() as s:
            row = saved_segments.update(s, principal.tenant_id, segment_id, body["condition"],
                                        state().runtime.clock.now())
            return _segment(s, principal, row)
    except DefinitionError as exc:
        raise _invalid("segment", exc) from None


@endpoint(api, "/segments/<int:segment_id>", "DELETE", summary="Delete a segment no published journey uses",
          tag="segments", permission="edit", raw_out=_DELETED,
          description="409 `segment_in_use` names the published journeys that use it.")
def delete_segment(principal: Principal, segment_id: int) -> Any:
    try:
        with state().db.unit_of_work() as s:
            saved_segments.delete(s, principal.tenant_id, segment_id)
    except InUse as exc:
        raise _in_use("segment_in_use", exc) from None
    return {"deleted": segment_id}


@endpoint(api, "/segments/<int:segment_id>/members", "GET", summary="The segment's current members",
          tag="segments", query=PageQuery, out=ContactOut, many=True)
def segment_members(principal: Principal, segment_id: int, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        name = saved_segments.segment(s, principal.tenant_id, segment_id).name
        return Page(saved_segments.members(s, principal.tenant_id, name, limit=limit, offset=offset),
                    saved_segments.count_members(s, principal.tenant_id, name), page, limit)


# --- custom triggers --------------------------------------------------------------------

def trigger_out(row: CustomTrigger, used: list[Use]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "attributes": declared.attribute_list(row.attributes),
            "created_at": row.created_at, "used_by": _used(used), "example_event": declared.event_body(row)}


def _trigger(s: Session, principal: Principal, row: CustomTrigger) -> dict[str, Any]:
    return trigger_out(row, uses(s, principal.tenant_id, "custom_trigger", row.name))


@endpoint(api, "/custom-triggers", "GET", summary="Declared custom triggers and their attributes",
          tag="custom triggers", query=PageQuery, out=CustomTriggerOut, many=True)
def list_custom_triggers(principal: Principal, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        rows = declared.declarations(s, principal.tenant_id, limit=limit, offset=offset)
        used = uses_by_name(s, principal.tenant_id, "custom_trigger")
        return Page([trigger_out(r, used.get(r.name, [])) for r in rows],
                    declared.count_declarations(s, principal.tenant_id), page, limit)


@endpoint(api, "/custom-triggers", "POST", summary="Declare a custom trigger (name and attribute schema)",
          tag="custom triggers", permission="edit", body=CustomTriggerIn, out=CustomTriggerOut, status=201,
          description="409 `custom_trigger_exists` when the name is taken.")
def create_custom_trigger(principal: Principal, body: dict[str, Any]) -> Any:
    try:
        with state().db.unit_of_work() as s:
            row = declared.create(s, principal.tenant_id, body["name"], body["attributes"],
                                  state().runtime.clock.now())
            return _trigger(s, principal, row)
    except DefinitionError as exc:
        raise _invalid("custom trigger", exc) from None
    except NameTaken as exc:
        raise ApiError(409, "custom_trigger_exists", str(exc), {"name": [str(exc)]}) from None


@endpoint(api, "/custom-triggers/<int:trigger_id>", "GET", summary="A custom trigger", tag="custom triggers",
          out=CustomTriggerOut)
def get_custom_trigger(principal: Principal, trigger_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return _trigger(s, principal, declared.declaration(s, principal.tenant_id, trigger_id))


@endpoint(api, "/custom-triggers/<int:trigger_id>", "PUT", summary="Replace a custom trigger's attributes",
          tag="custom triggers", permission="edit", body=CustomTriggerUpdateIn, out=CustomTriggerOut)
def update_custom_trigger(principal: Principal, trigger_id: int, body: dict[str, Any]) -> Any:
    try:
        with state().db.unit_of_work() as s:
            row = declared.update(s, principal.tenant_id, trigger_id, body["attributes"],
                                  state().runtime.clock.now())
            return _trigger(s, principal, row)
    except DefinitionError as exc:
        raise _invalid("custom trigger", exc) from None


@endpoint(api, "/custom-triggers/<int:trigger_id>", "DELETE", summary="Delete a custom trigger no published "
          "journey uses", tag="custom triggers", permission="edit", raw_out=_DELETED,
          description="409 `custom_trigger_in_use` names the published journeys that use it.")
def delete_custom_trigger(principal: Principal, trigger_id: int) -> Any:
    try:
        with state().db.unit_of_work() as s:
            declared.delete(s, principal.tenant_id, trigger_id)
    except InUse as exc:
        raise _in_use("custom_trigger_in_use", exc) from None
    return {"deleted": trigger_id}


# --- integrations (admin) ---------------------------------------------------------------

@endpoint(api, "/integrations", "GET", summary="Inbound integrations: URL to paste, which secrets are set, "
          "last delivery", tag="integrations", permission="admin", out=IntegrationOut, many=True)
def list_integrations(principal: Principal) -> Any:
    with state().db.unit_of_work() as s:
        return integration_secrets.status(s, principal.tenant_id)


@endpoint(api, "/integrations/<service>", "PATCH", summary="Set values an integration gives (tokens, ids)",
          tag="integrations", permission="admin", body=IntegrationUpdateIn, out=IntegrationOut)
def update_integration(principal: Principal, service: str, body: dict[str, Any]) -> Any:
    integration_secrets.service(service)
    try:
        with state().db.unit_of_work() as s:
            integration_secrets.update(s, principal.tenant_id, service, body["settings"])
    except DefinitionError as exc:
        raise ApiError(422, "invalid_request", "Unknown settings.",
                       {f"settings.{k}": v for k, v in exc.errors.items()}) from None
    with state().db.unit_of_work() as s:
        return next(x for x in integration_secrets.status(s, principal.tenant_id) if x["service"] == service)


@endpoint(api, "/integrations/<service>/secret", "POST", summary="Rotate a secret; it is returned only here",
          tag="integrations", permission="admin", body=SecretRotateIn, out=SecretOut,
          description="The previous secret stops working at once.")
def rotate_integration_secret(principal: Principal, service: str, body: dict[str, Any]) -> Any:
    integration_secrets.service(service)
    try:
        with state().db.unit_of_work() as s:
            setting, value = integration_secrets.rotate(s, principal.tenant_id, service, body.get("setting"))
    except DefinitionError as exc:
        messages = [m for msgs in exc.errors.values() for m in msgs]
        raise ApiError(422, "invalid_request", "This secret cannot be made here.", {"setting": messages}) from None
    response = jsonify(SecretOut().dump({"service": service, "setting": setting, "secret": value}))
    response.headers["Cache-Control"] = "no-store"
    return response
