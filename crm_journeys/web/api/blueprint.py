"""The REST API's blueprint, alone in its module so route modules can import it without a cycle."""

from __future__ import annotations

from flask import Blueprint

from crm_journeys.web.errors import register_error_handlers

api = Blueprint("crm_journeys_api", __name__)
register_error_handlers(api)
