"""Journeys over the API: CRUD, lifecycle, versions and diff, simulate and backtest."""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.actions.registry import installed_actions
from crm_journeys.auth.accounts import Principal, can
from crm_journeys.errors import NotFound
from crm_journeys.runtime.owners import owner_lookup
from crm_journeys.runtime.versions import create_journey, publish, set_status
from crm_journeys.services import queries
from crm_journeys.services.diff import diff_documents
from crm_journeys.services.gallery import template
from crm_journeys.storage.models import Journey, JourneyVersion
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.schemas import (
    BacktestIn,
    BacktestOut,
    DiffOut,
    DiffQuery,
    JourneyCreateIn,
    JourneyOut,
    JourneySummaryOut,
    JourneyUpdateIn,
    PageQuery,
    PublishIn,
    SimulateIn,
    SimulateOut,
    VersionOut,
)
from crm_journeys.web.common.backtests import backtest_jobs, job_out, run_simulation, start_backtest
from crm_journeys.web.common.drafts import BLANK, draft_errors, save_draft, unchanged
from crm_journeys.web.endpoint import Page, endpoint, page_window
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

TAG = "journeys"


def journey_out(s: Session, principal: Principal, journey: Journey, *, full: bool = True) -> dict[str, Any]:
    live = s.get(JourneyVersion, journey.live_version_id) if journey.live_version_id else None
    out: dict[str, Any] = {
        "id": journey.id, "name": journey.name, "status": journey.status, "version": live.version if live else None,
        "updated_at": journey.updated_at, "counts": queries.counts(s, principal.tenant_id, [journey.id])[journey.id],
    }
    if full:
        out.update(created_at=journey.created_at, draft=journey.draft, draft_errors=draft_errors(journey.draft),
                   unpublished_changes=live is None or live.document != journey.draft,
                   trigger_path=url_for("crm_journeys_api.trigger_journey", journey_id=journey.id),
                   trigger_secret=journey.trigger_secret if can(principal.role, "edit") else None)
    return out


@endpoint(api, "/journeys", "GET", summary="List journeys with status, live version and counts", tag=TAG,
          query=PageQuery, out=JourneySummaryOut, many=True)
def list_journeys(principal: Principal, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    with state().db.unit_of_work() as s:
        rows = queries.journeys(s, principal.tenant_id, limit=limit, offset=offset)
        numbers = queries.version_numbers(s, principal.tenant_id)
        counts = queries.counts(s, principal.tenant_id, [j.id for j in rows])
        return Page([{"id": j.id, "name": j.name, "status": j.status, "updated_at": j.updated_at,
                      "version": numbers.get(j.live_version_id or -1), "counts": counts[j.id]} for j in rows],
                    queries.count_journeys(s, principal.tenant_id), page, limit)


@endpoint(api, "/journeys", "POST", summary="Create a draft (blank, from a document, or from a template)",
          tag=TAG, permission="edit", body=JourneyCreateIn, out=JourneyOut, status=201)
def create(principal: Principal, body: dict[str, Any]) -> Any:
    document = body.get("document") or (template(body["template"])["document"] if "template" in body else dict(BLANK))
    if body.get("name"):
        document["name"] = body["name"]
    with state().db.unit_of_work() as s:
        journey = create_journey(s, principal.tenant_id, document, state().runtime.clock.now())
        return journey_out(s, principal, journey)


@endpoint(api, "/journeys/<int:journey_id>", "GET", summary="A journey with its draft and what blocks publishing",
          tag=TAG, out=JourneyOut)
def get_journey(principal: Principal, journey_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return journey_out(s, principal, queries.journey(s, principal.tenant_id, journey_id))


@endpoint(api, "/journeys/<int:journey_id>", "PUT", summary="Replace the draft (drafts may be incomplete)",
          tag=TAG, permission="edit", body=JourneyUpdateIn, out=JourneyOut)
def update_journey(principal: Principal, journey_id: int, body: dict[str, Any]) -> Any:
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, principal.tenant_id, journey_id)
        save_draft(journey, body["document"], state().runtime.clock.now())
        return journey_out(s, principal, journey)


@endpoint(api, "/journeys/<int:journey_id>", "DELETE", summary="Delete a journey that is a draft or archived",
          tag=TAG, permission="edit", status=200, raw_out={"type": "object"})
def delete_journey(principal: Principal, journey_id: int) -> Any:
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, principal.tenant_id, journey_id)
        if journey.status not in ("draft", "archived"):
            raise ApiError(409, "journey_in_use", "Archive the journey before deleting it.")
        s.delete(journey)
    return {"deleted": journey_id}


@endpoint(api, "/journeys/<int:journey_id>/publish", "POST", summary="Publish the draft as a new version",
          tag=TAG, permission="publish", body=PublishIn, out=JourneyOut,
          description="Contacts in flight stay on their version unless `migration` maps old step ids to new ones "
                      "(runs of any older version move; `moved` counts them per old step).")
def publish_journey(principal: Principal, journey_id: int, body: dict[str, Any]) -> Any:
    owners = owner_lookup(state().runtime, principal.tenant_id)  # outside the transaction
    with state().db.unit_of_work() as s:
        if not body["migration"] and unchanged(s, queries.journey(s, principal.tenant_id, journey_id)):
            raise ApiError(409, "nothing_changed", "The draft is the live version: nothing to publish.")
        moved: dict[str, int] = {}
        publish(s, principal.tenant_id, journey_id, state().runtime.clock.now(), actions=installed_actions(),
                migration=body["migration"] or None, owners=owners, moved=moved)
        return {**journey_out(s, principal, queries.journey(s, principal.tenant_id, journey_id)), "moved": moved}


def _lifecycle(principal: Principal, journey_id: int, status: str, allowed_from: tuple[str, ...]) -> Any:
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, principal.tenant_id, journey_id)
        if journey.status not in allowed_from:
            raise ApiError(409, "wrong_status", f"A {journey.status} journey cannot become {status}.")
        set_status(s, principal.tenant_id, journey_id, status, state().runtime.clock.now())
        return journey_out(s, principal, journey)


@endpoint(api, "/journeys/<int:journey_id>/pause", "POST", summary="Pause: no entries, no progress",
          tag=TAG, permission="publish", out=JourneyOut)
def pause_journey(principal: Principal, journey_id: int) -> Any:
    return _lifecycle(principal, journey_id, "paused", ("live",))


@endpoint(api, "/journeys/<int:journey_id>/resume", "POST", summary="Resume a paused journey",
          tag=TAG, permission="publish", out=JourneyOut)
def resume_journey(principal: Principal, journey_id: int) -> Any:
    return _lifecycle(principal, journey_id, "live", ("paused",))


@endpoint(api, "/journeys/<int:journey_id>/archive", "POST", summary="Archive: contacts in flight exit",
          tag=TAG, permission="publish", out=JourneyOut)
def archive_journey(principal: Principal, journey_id: int) -> Any:
    return _lifecycle(principal, journey_id, "archived", ("live", "paused"))


@endpoint(api, "/journeys/<int:journey_id>/versions", "GET", summary="Published versions, newest first",
          tag=TAG, out=VersionOut, many=True)
def list_versions(principal: Principal, journey_id: int) -> Any:
    with state().db.unit_of_work() as s:
        queries.journey(s, principal.tenant_id, journey_id)
        return list(s.scalars(select(JourneyVersion).where(JourneyVersion.tenant_id == principal.tenant_id,
                                                           JourneyVersion.journey_id == journey_id)
                              .order_by(JourneyVersion.version.desc())))


def _document(s: Session, principal: Principal, journey_id: int, which: str) -> dict[str, Any]:
    journey = queries.journey(s, principal.tenant_id, journey_id)
    if which == "draft":
        return journey.draft
    if not which.isdigit():
        raise ApiError(422, "invalid_request", "Name a version number or 'draft'.", {"query.from": ["not a version"]})
    row = s.scalar(select(JourneyVersion).where(JourneyVersion.tenant_id == principal.tenant_id,
                                                JourneyVersion.journey_id == journey_id,
                                                JourneyVersion.version == int(which)))
    if row is None:
        raise NotFound(f"journey {journey_id} has no version {which}")
    return row.document


@endpoint(api, "/journeys/<int:journey_id>/versions/<int:number>", "GET", summary="One published version",
          tag=TAG, out=VersionOut)
def get_version(principal: Principal, journey_id: int, number: int) -> Any:
    with state().db.unit_of_work() as s:
        queries.journey(s, principal.tenant_id, journey_id)
        row = s.scalar(select(JourneyVersion).where(JourneyVersion.tenant_id == principal.tenant_id,
                                                    JourneyVersion.journey_id == journey_id,
                                                    JourneyVersion.version == number))
        if row is None:
            raise NotFound(f"journey {journey_id} has no version {number}")
        return row


@endpoint(api, "/journeys/<int:journey_id>/diff", "GET", summary="What changed between two versions (or the draft)",
          tag=TAG, query=DiffQuery, out=DiffOut)
def diff(principal: Principal, journey_id: int, query: dict[str, Any]) -> Any:
    with state().db.unit_of_work() as s:
        before = _document(s, principal, journey_id, query["from_"])
        after = _document(s, principal, journey_id, query["to"])
    return {"from_": query["from_"], "to": query["to"], "changes": diff_documents(before, after)}


@endpoint(api, "/journeys/<int:journey_id>/simulate", "POST", summary="Walk one contact through the draft",
          tag=TAG, permission="test", body=SimulateIn, out=SimulateOut,
          description="Runs in a throw-away database on a virtual clock; nothing reaches the CRM.")
def simulate_journey(principal: Principal, journey_id: int, body: dict[str, Any]) -> Any:
    with state().db.unit_of_work() as s:
        document = queries.journey(s, principal.tenant_id, journey_id).draft
    return run_simulation(document, body)


@endpoint(api, "/journeys/<int:journey_id>/backtest", "POST",
          summary="Replay the recorded events of the last N days against the draft", tag=TAG, permission="test",
          body=BacktestIn, out=BacktestOut, status=202,
          description="Starts a background run; poll the returned job for progress and the result.")
def backtest_journey(principal: Principal, journey_id: int, body: dict[str, Any]) -> Any:
    return job_out(start_backtest(principal, journey_id, body["days"]))


@endpoint(api, "/journeys/<int:journey_id>/backtests/<job_id>", "GET", summary="A backtest's progress and result",
          tag=TAG, out=BacktestOut)
def get_backtest(principal: Principal, journey_id: int, job_id: str) -> Any:
    job = backtest_jobs().get(principal.tenant_id, job_id)
    if job is None or job.journey_id != journey_id:
        raise NotFound(f"no backtest {job_id}")
    return job_out(job)
