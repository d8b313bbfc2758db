"""The REST API's reference routes: the catalogue, the templates gallery and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from crm_journeys.services.catalog import catalog
from crm_journeys.services.gallery import templates
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.openapi import openapi_document
from crm_journeys.web.api.schemas import TemplateOut
from crm_journeys.web.endpoint import endpoint

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
