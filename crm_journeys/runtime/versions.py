"""Journey lifecycle in the database: drafts, publishing versions, the routes they listen on.

Publishing validates the draft, compiles it, stores the immutable version with its
compiled rules, and rewrites the journey's routes, all in the caller's transaction.
Contacts in flight stay on the version they entered unless a migration map moves them.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crm_journeys.definition.model import Journey as JourneyModel
from crm_journeys.errors import DefinitionError, NotFound
from crm_journeys.rules.compiler import (
    COMPILER_VERSION,
    CompiledJourney,
    compile_journey,
    ruleset_name_for,
)
from crm_journeys.runtime import publish_checks, starting_points  # noqa: E402  (after the models it uses)
from crm_journeys.runtime.owners import OwnerLookup, resolve_owners
from crm_journeys.storage.models import Instance, Journey, JourneyVersion, Route, StepLog

STATUSES = ("draft", "live", "paused", "archived")


log = logging.getLogger(__name__)

@dataclass(frozen=True)
class LoadedVersion:
    """A published version as the runtime uses it: model plus compiled rules."""

    id: int
    journey_id: int
    tenant_id: int
    version: int
    journey: JourneyModel
    compiled: CompiledJourney


def validate(document: dict[str, Any], actions: Any = None) -> JourneyModel:
    from crm_journeys.definition.checks import validate_document

    return validate_document(document, actions=actions)


def create_journey(session: Session, tenant_id: int, document: dict[str, Any], now: datetime) -> Journey:
    """Save a draft. Drafts may be incomplete; only publishing demands a valid document."""
    journey = Journey(tenant_id=tenant_id, name=str(document.get("name") or "Untitled journey")[:200],
                      status="draft", draft=document, trigger_secret=secrets.token_urlsafe(24),
                      created_at=now, updated_at=now)
    session.add(journey)
    session.flush()
    return journey


def get_journey(session: Session, tenant_id: int, journey_id: int) -> Journey:
    journey = session.scalar(select(Journey).where(Journey.tenant_id == tenant_id,
                                                   Journey.id == journey_id))
    if journey is None:
        raise NotFound(f"no journey {journey_id}")
    return journey


def publish(session: Session, tenant_id: int, journey_id: int, now: datetime, *,
            actions: Any = None, migration: dict[str, str] | None = None,
            owners: OwnerLookup | None = None, moved: dict[str, int] | None = None) -> JourneyVersion:
    """Validate, compile and store a new version; it takes over new entries.

    Args:
        migration: old step id -> new step id; in-flight instances of any older version
            at a mapped step move to the new version at the new step.
        owners: the host's user list (``owners.owner_lookup``): owners given by email are
            replaced by the host's ids (in the version and the draft), unknown ones
            refused. ``None``: kept as written.
        moved: filled with how many contacts moved, per old step id.
    Raises:
        DefinitionError: the draft is invalid (every error, with its JSON path).
    """
    journey = get_journey(session, tenant_id, journey_id)
    model = validate(journey.draft, actions)
    document = resolve_owners(journey.draft, actions, owners)
    if document is not journey.draft:  # owners by email became the CRM's ids: the draft
        model = validate(document, actions)  # takes them too, or it would differ from live
        journey.draft = document
    publish_checks.check_for_tenant(session, tenant_id, model)  # webhook targets, email support
    number = (session.scalar(select(func.max(JourneyVersion.version))
                             .where(JourneyVersion.journey_id == journey.id)) or 0) + 1
    compiled = compile_journey(model, ruleset_name_for(f"{tenant_id}x{journey.id}", number), str(journey.id))
    version = JourneyVersion(tenant_id=tenant_id, journey_id=journey.id, version=number,
                             document=document, compiled=compiled.to_json(), active=True,
                             published_at=now)
    session.add(version)
    session.flush()
    previous = journey.live_version_id
    session.execute(update(JourneyVersion).where(JourneyVersion.journey_id == journey.id,
                                                 JourneyVersion.id != version.id).values(active=False))
    if previous and migration:
        counts = _migrate_instances(session, version, model, migration, now)
        if moved is not None:
            moved.update(counts)
    journey.live_version_id = version.id
    journey.name = model.name
    journey.status = "live"
    journey.updated_at = now
    write_routes(session, journey, version, compiled)
    starting_points.on_publish(session, journey, version, model, compiled, now)  # dates, lapses, segments
    return version


def _migrate_instances(session: Session, new: JourneyVersion, model: JourneyModel,
                       migration: dict[str, str], now: datetime) -> dict[str, int]:
    """Move active runs of every older version of the journey (not only the previous one:
    contacts can wait weeks across several publishes) and log one timeline entry each."""
    known = {s.id for s in model.steps}
    bad = {old: new_id for old, new_id in migration.items() if new_id not in known}
    if bad:
        raise DefinitionError({f"migration.{old}": [f"step '{n}' does not exist in the new version"]
                               for old, n in bad.items()})
    older = select(JourneyVersion.id).where(JourneyVersion.journey_id == new.journey_id, JourneyVersion.id != new.id)
    counts: dict[str, int] = {}
    for old_step, new_step in migration.items():
        runs = session.execute(select(Instance.id, Instance.version_id).where(
            Instance.version_id.in_(older), Instance.status == "active", Instance.step == old_step)).all()
        if not runs:
            continue
        session.execute(update(Instance).where(Instance.id.in_([r.id for r in runs]))
                        .values(version_id=new.id, step=new_step))
        numbers = dict(session.execute(select(JourneyVersion.id, JourneyVersion.version)
                                       .where(JourneyVersion.id.in_({r.version_id for r in runs}))).all())
        session.add_all(StepLog(tenant_id=new.tenant_id, journey_id=new.journey_id, instance_id=r.id, at=now,
                                step=new_step, kind="moved", branch="",
                                detail={"why": f"moved from version {numbers[r.version_id]} step '{old_step}' "
                                               f"to version {new.version} step '{new_step}'"}) for r in runs)
        counts[old_step] = len(runs)
    return counts


def write_routes(session: Session, journey: Journey, version: JourneyVersion,
                 compiled: CompiledJourney) -> None:
    """Routes for a live journey's current version; none while paused or archived."""
    old_versions = select(JourneyVersion.id).where(JourneyVersion.journey_id == journey.id)
    session.execute(delete(Route).where(Route.version_id.in_(old_versions)))
    if journey.status != "live":
        return
    seen = set()
    for route in compiled.entry_routes:
        pair = (route["event"], route["key"])
        if pair not in seen:
            seen.add(pair)
            session.add(Route(tenant_id=journey.tenant_id, event=route["event"], key=route["key"],
                              version_id=version.id))


def set_status(session: Session, tenant_id: int, journey_id: int, status: str, now: datetime) -> Journey:
    """Pause (no entries, no progress), resume, or archive (in-flight instances exit)."""
    journey = get_journey(session, tenant_id, journey_id)
    if status not in STATUSES or status == "draft":
        raise DefinitionError({"status": [f"cannot set status to {status!r}"]})
    if journey.live_version_id is None:
        raise DefinitionError({"status": ["publish the journey first"]})
    journey.status = status
    journey.updated_at = now
    version = session.get(JourneyVersion, journey.live_version_id)
    assert version is not None
    write_routes(session, journey, version, compiled_of(version))
    starting_points.on_status(session, journey, version, now)
    if status == "archived":
        session.execute(update(Instance).where(Instance.journey_id == journey.id,
                                               Instance.status == "active")
                        .values(status="exited", outcome="journey archived", ended_at=now))
    return journey


class VersionCache:
    """Compiled versions by id, loaded once per process (versions are immutable)."""

    def __init__(self) -> None:
        self._by_id: dict[int, LoadedVersion] = {}

    def get(self, session: Session, version_id: int) -> LoadedVersion:
        hit = self._by_id.get(version_id)
        if hit is None:
            row = session.get(JourneyVersion, version_id)
            if row is None:
                raise NotFound(f"no journey version {version_id}")
            model = validate(row.document)
            hit = LoadedVersion(row.id, row.journey_id, row.tenant_id, row.version, model, compiled_of(row, model))
            self._by_id[version_id] = hit
        return hit


def compiled_of(version: JourneyVersion, model: JourneyModel | None = None) -> CompiledJourney:
    """A version's rules as this compiler makes them. The stored rules when the current
    compiler made them; otherwise the document, which is the version, compiled again
    under the same ruleset name (a fix in how documents compile, such as goals waiting
    for ``any`` event, then reaches versions published before it). If the old document
    no longer compiles, the stored rules run as before, and the log says why."""
    stored = version.compiled or {}
    if stored.get("compiler") == COMPILER_VERSION:
        return CompiledJourney.from_json(stored)
    try:
        return compile_journey(model or validate(version.document), stored["ruleset_name"], str(version.journey_id))
    except Exception:
        log.warning("journey version %s could not be compiled again; it runs its stored rules", version.id,
                    exc_info=True, extra={"tenant_id": version.tenant_id, "journey_id": version.journey_id})
        return CompiledJourney.from_json(stored)
