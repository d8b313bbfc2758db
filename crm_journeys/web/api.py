"""REST API blueprint (the web engineer extends this: journeys, events, catalog, OpenAPI)."""

from __future__ import annotations

from flask import Blueprint

api = Blueprint("crm_journeys_api", __name__)
