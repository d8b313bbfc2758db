"""Retry or dismiss failed actions, for the REST API and the action-errors page alike."""

from __future__ import annotations

from crm_journeys.auth.accounts import Principal
from crm_journeys.runtime import action_errors as errors
from crm_journeys.web.state import state

MOVES = {"retry": errors.retry, "dismiss": errors.dismiss}


def apply(principal: Principal, verb: str, ids: list[int] | None,
          f: errors.ErrorFilter | None = None) -> errors.Outcome:
    """Retry or dismiss ``ids``, or every dead row ``f`` matches, in one transaction."""
    with state().db.unit_of_work() as s:
        return MOVES[verb](s, principal.tenant_id, state().runtime.clock.now(), principal.name, ids=ids, matching=f)

