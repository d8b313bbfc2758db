"""Live counts per step for one published version, so the canvas can show the map of the
version it draws (the journey-wide analytics add every version up).

A contact "passed" a step when its run on that version logged a visit there; "waiting"
counts the version's active runs held at the step now.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_journeys.auth.accounts import Principal
from crm_journeys.errors import NotFound
from crm_journeys.runtime.retention import VISIT_KINDS
from crm_journeys.services import queries
from crm_journeys.storage.models import Instance, JourneyVersion, StepLog
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.endpoint import endpoint
from crm_journeys.web.state import state


def version_step_counts(s: Session, tenant_id: int, journey_id: int, number: int) -> dict[str, Any]:
    queries.journey(s, tenant_id, journey_id)
    version = s.scalar(select(JourneyVersion).where(JourneyVersion.tenant_id == tenant_id,
                                                    JourneyVersion.journey_id == journey_id,
                                                    JourneyVersion.version == number))
    if version is None:
        raise NotFound(f"journey {journey_id} has no version {number}")
    passed = dict(s.execute(
        select(StepLog.step, func.count(func.distinct(StepLog.instance_id)))
        .join(Instance, Instance.id == StepLog.instance_id)
        .where(StepLog.tenant_id == tenant_id, Instance.version_id == version.id, StepLog.kind.in_(VISIT_KINDS))
        .group_by(StepLog.step)).all())
    waiting = dict(s.execute(
        select(Instance.step, func.count()).where(Instance.tenant_id == tenant_id, Instance.version_id == version.id,
                                                  Instance.status == "active").group_by(Instance.step)).all())
    steps = [{"id": st["id"], "entered": int(passed.get(st["id"], 0)), "waiting": int(waiting.get(st["id"], 0))}
             for st in version.document.get("steps") or [] if isinstance(st, dict) and st.get("id")]
    return {"version": number, "steps": steps}


@endpoint(api, "/journeys/<int:journey_id>/versions/<int:number>/counts", "GET",
          summary="Contacts passed and waiting per step, for one version", tag="analytics",
          raw_out={"type": "object", "properties": {"version": {"type": "integer"},
                                                    "steps": {"type": "array", "items": {"type": "object"}}}})
def get_version_counts(principal: Principal, journey_id: int, number: int) -> Any:
    with state().db.unit_of_work() as s:
        return version_step_counts(s, principal.tenant_id, journey_id, number)
