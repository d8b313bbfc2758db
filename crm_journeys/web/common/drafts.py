"""A journey's draft as both front ends edit it: the blank one a new journey starts from, what
blocks publishing it, saving it, and whether it differs from the live version.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from crm_journeys.actions.registry import installed_actions
from crm_journeys.errors import DefinitionError
from crm_journeys.runtime.versions import validate
from crm_journeys.storage.models import Journey, JourneyVersion
from crm_journeys.web.errors import ApiError

BLANK = {"format_version": 1, "name": "Untitled journey", "description": "", "entry": {"policy": "once"},
         "starting_points": [], "entry_filter": None, "first_step": None, "steps": [], "goals": [], "exit_rules": []}


def draft_errors(document: dict[str, Any]) -> dict[str, list[str]]:
    """What blocks publishing, by JSON path (empty when the draft would publish)."""
    try:
        validate(document, installed_actions())
    except DefinitionError as exc:
        return exc.errors
    return {}


def save_draft(journey: Journey, document: dict[str, Any], now: Any) -> None:
    """Keep the edited document as the draft (an archived journey is read-only: 409); a journey
    never published takes its name from the document."""
    if journey.status == "archived":
        raise ApiError(409, "archived", "An archived journey cannot be edited.")
    journey.draft = document
    if journey.status == "draft":
        journey.name = str(document.get("name") or journey.name)[:200]
    journey.updated_at = now


def unchanged(s: Session, journey: Journey) -> bool:
    """The draft equals the live version: publishing it would only add an identical version."""
    live = s.get(JourneyVersion, journey.live_version_id) if journey.live_version_id else None
    return live is not None and live.document == journey.draft

