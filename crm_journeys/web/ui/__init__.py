"""The server-rendered UI: pages, forms, the builder, the canvas and the admin pages. Every view
module adds its views to the one ``ui`` blueprint (defined in ``pages``) when imported, so the
package imports them all here; nothing in it imports ``web.api`` (an import-linter contract).
"""

from __future__ import annotations

from crm_journeys.web.ui import (  # noqa: F401  (register their views on ``ui``)
    admin,
    admin_action_errors,
    admin_integrations,
    admin_segments,
    admin_triggers,
    builder,
    builder_rules,
    builder_steps,
    canvas,
)
from crm_journeys.web.ui.pages import ui

__all__ = ["ui"]
