"""REST API blueprint: the catalogue, templates and the OpenAPI document live here; journeys
(``api_journeys``) and activity (``api_activity``) add their routes to the same blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from crm_journeys.web.catalog import catalog
from crm_journeys.web.endpoint import endpoint
from crm_journeys.web.errors import register_error_handlers
from crm_journeys.web.gallery import templates
from crm_journeys.web.openapi import openapi_document
from crm_journeys.web.schemas import TemplateOut

api = Blueprint("crm_journeys_api", __name__)
register_error_handlers(api)

TAG = "catalog"


@endpoint(api, "/openapi.json", "GET", summary="This OpenAPI document", tag=TAG, permission=None,
          raw_out={"type": "object"})
def openapi_json() -> Any:
    prefix = current_app.config.get("CRM_JOURNEYS_URL_PREFIX", "")
    return jsonify(openapi_document(f"{prefix}/api"))


@endpoint(api, "/catalog", "GET", summary="Starting-point types, step types, actions and operators", tag=TAG,
          raw_out={"type": "object", "properties": {
              "starting_points": {"type": "array", "items": {"type": "object"}},
              "events": {"type": "object"}, "steps": {"type": "array", "items": {"type": "object"}},
              "actions": {"type": "array", "items": {"type": "object"}}, "operators": {"type": "object"},
              "entry_policies": {"type": "array", "items": {"type": "string"}}}})
def get_catalog(principal: Any) -> Any:
    return catalog()


@endpoint(api, "/templates", "GET", summary="The templates gallery", tag=TAG, out=TemplateOut, many=True)
def list_templates(principal: Any) -> Any:
    return templates()


# Route modules register on import; imported last because they use ``api``.
from crm_journeys.web import (  # noqa: E402,F401
    api_action_errors,
    api_activity,
    api_admin,
    api_email,
    api_journeys,
    api_owners,
    api_sandbox,
    api_setup,
    version_counts,
)
