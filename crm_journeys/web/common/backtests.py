"""Test mode for both front ends: simulate one contact through a draft, and the background
backtests (replaying recorded events against a draft) with their progress.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from crm_journeys.auth.accounts import Principal
from crm_journeys.errors import DefinitionError
from crm_journeys.services import queries, testmode
from crm_journeys.web.common.drafts import draft_errors
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state


def run_simulation(document: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    try:
        return testmode.simulate(document, body["contact"], start=state().runtime.clock.now(),
                                 horizon=body.get("horizon", "P30D"), starting_point=body.get("starting_point"),
                                 events=body.get("events"))
    except ValueError as exc:
        raise ApiError(422, "cannot_simulate", str(exc)) from None


def backtest_jobs() -> testmode.BacktestJobs:
    """The app's backtests: one registry per Flask app, so the page and the API poll the same jobs."""
    return current_app.extensions.setdefault("crm_journeys_backtests", testmode.BacktestJobs())


def start_backtest(principal: Principal, journey_id: int, days: int) -> testmode.BacktestJob:
    now = state().runtime.clock.now()
    start, end = testmode.window(now, days)
    with state().db.unit_of_work() as s:
        document = queries.journey(s, principal.tenant_id, journey_id).draft
        everything = testmode.recorded_events(s, principal.tenant_id, start, include_own=True)
        contacts = testmode.rewind(testmode.current_contacts(s, principal.tenant_id), everything, start)
    events = [e for e in everything if not testmode.is_own(e)]
    errors = draft_errors(document)
    if errors:
        raise DefinitionError(errors)
    return backtest_jobs().start(principal.tenant_id, journey_id, lambda job: testmode.backtest(
        document, events, start=start, end=end, job=job, contacts=contacts))


def job_out(job: testmode.BacktestJob) -> dict[str, Any]:
    return {"id": job.id, "journey_id": job.journey_id, "status": job.status, "processed": job.processed,
            "total": job.total, "progress": job.progress, "error": job.error, "result": job.result}

