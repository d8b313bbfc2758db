"""The REST API (JSON under ``/api``): route modules, their marshmallow schemas and the OpenAPI
document. Every route module adds its routes to the one ``api`` blueprint when imported, so the
package imports them all here; nothing in it imports ``web.ui`` (an import-linter contract).
"""

from __future__ import annotations

from crm_journeys.web.api import (  # noqa: F401  (register their routes on ``api``)
    action_errors,
    activity,
    admin,
    catalog_routes,
    email,
    journeys,
    owners,
    sandbox,
    setup,
    version_counts,
)
from crm_journeys.web.api.blueprint import api

__all__ = ["api"]
