"""Helpers for the starting-point tests: tiny journey documents and reading entries back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_journeys.storage.models import Contact, Instance, StepLog


def journey(starting_points: list[dict[str, Any]], *, tz: str = "UTC", policy: str = "every_time",
            entry_filter: dict[str, Any] | None = None, steps: list[dict[str, Any]] | None = None,
            settings: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A journey whose contacts enter and stop at an exit step (nothing to send)."""
    doc = {"format_version": 1, "name": "sp test",
           "settings": {"interaction_triggers_start": False, "time_zone": tz, **(settings or {})},
           "entry": {"policy": policy}, "starting_points": starting_points,
           "entry_filter": entry_filter, "first_step": (steps or [{"id": "end"}])[0]["id"],
           "steps": steps or [{"id": "end", "type": "exit"}], "goals": [], "exit_rules": []}
    doc.update(extra)
    return doc


def sp(type_: str, params: dict[str, Any] | None = None, id_: str | None = None,
       filter_: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": id_ or type_, "type": type_, "params": params or {}, "filter": filter_, "next": None}


def entries(h: Any, journey_id: int | None = None) -> list[tuple[str, str, str, str]]:
    """(email, starting point, entry key, entered at ISO) of every entry, in order."""
    with h.db.unit_of_work() as s:
        stmt = (select(Contact.email, StepLog.branch, Instance.entry_key, Instance.entered_at)
                .join(Instance, Instance.id == StepLog.instance_id)
                .join(Contact, Contact.id == Instance.contact_id)
                .where(StepLog.tenant_id == h.tenant_id, StepLog.kind == "entered")
                .order_by(StepLog.id))
        if journey_id is not None:
            stmt = stmt.where(Instance.journey_id == journey_id)
        return [(e, b, k, at.isoformat()) for e, b, k, at in s.execute(stmt)]


def entered(h: Any, journey_id: int | None = None) -> list[str]:
    return [e for e, *_ in entries(h, journey_id)]
