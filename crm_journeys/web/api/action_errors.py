"""Action errors over the REST API (admin role): the tenant's dead and retrying actions,
and retry or dismiss, one row or many.

The rules live in ``runtime.action_errors``; this module maps them to HTTP: another
tenant's row is a 404, a row that is not dead a 409 (``not_dead``) saying what it is.
"""

from __future__ import annotations

from typing import Any

from crm_journeys.auth.accounts import Principal
from crm_journeys.runtime import action_errors as errors
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.schemas_action_errors import (
    ActionErrorOut,
    ActionErrorQuery,
    ActionErrorsIn,
    OutcomeOut,
)
from crm_journeys.web.common.action_errors import apply
from crm_journeys.web.endpoint import Page, endpoint, page_window
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

TAG = "action errors"


def error_filter(given: dict[str, Any]) -> errors.ErrorFilter:
    """The filter named by a query or body (the page's form uses the same names)."""
    return errors.ErrorFilter(status=given.get("status") or None, journey_id=given.get("journey_id"),
                              action=given.get("action") or None)


@endpoint(api, "/action-errors", "GET", summary="Failed actions: dead, and retrying after a failure", tag=TAG,
          permission="admin", query=ActionErrorQuery, out=ActionErrorOut, many=True,
          description="Newest first. Retrying rows show their next attempt in `next_attempt_at`.")
def list_action_errors(principal: Principal, query: dict[str, Any]) -> Any:
    limit, offset, page = page_window(query)
    f = error_filter(query)
    with state().db.unit_of_work() as s:
        return Page(errors.list_errors(s, principal.tenant_id, f, limit=limit, offset=offset),
                    errors.count_errors(s, principal.tenant_id, f), page, limit)


@endpoint(api, "/action-errors/<int:outbox_id>", "GET", summary="One action, whatever its status", tag=TAG,
          permission="admin", out=ActionErrorOut)
def get_action_error(principal: Principal, outbox_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return errors.get_error(s, principal.tenant_id, outbox_id)


def _one(principal: Principal, verb: str, outbox_id: int) -> Any:
    outcome = apply(principal, verb, [outbox_id])
    if outbox_id in outcome.missing:
        raise ApiError(404, "not_found", f"no action {outbox_id}")
    if outcome.refused:
        raise ApiError(409, "not_dead", outcome.refused[outbox_id])
    with state().db.unit_of_work() as s:
        return errors.get_error(s, principal.tenant_id, outbox_id)


def _many(principal: Principal, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    outcome = apply(principal, verb, body.get("ids"), error_filter(body))
    return {"changed": outcome.changed, "count": len(outcome.changed),
            "refused": {str(k): v for k, v in outcome.refused.items()}}


ONE = "Only a dead action moves; any other answers 409 `not_dead` saying what it is."
MANY = ("`ids`: for each id not moved, `refused` says why. `all_matching`: every dead action of the "
        "journey and action given.")


@endpoint(api, "/action-errors/<int:outbox_id>/retry", "POST", summary="Send a dead action again", tag=TAG,
          permission="admin", out=ActionErrorOut, extra_statuses=(404, 409),
          description=f"Pending, attempts 0, due now; it keeps its idempotency key. {ONE}")
def retry_action_error(principal: Principal, outbox_id: int) -> Any:
    return _one(principal, "retry", outbox_id)


@endpoint(api, "/action-errors/<int:outbox_id>/dismiss", "POST", summary="Give a dead action up", tag=TAG,
          permission="admin", out=ActionErrorOut, extra_statuses=(404, 409),
          description=f"Dismissed actions are never sent; retention removes them as dead ones. {ONE}")
def dismiss_action_error(principal: Principal, outbox_id: int) -> Any:
    return _one(principal, "dismiss", outbox_id)


@endpoint(api, "/action-errors/retry", "POST", summary="Send many dead actions again", tag=TAG,
          permission="admin", body=ActionErrorsIn, out=OutcomeOut, description=MANY)
def retry_action_errors(principal: Principal, body: dict[str, Any]) -> Any:
    return _many(principal, "retry", body)


@endpoint(api, "/action-errors/dismiss", "POST", summary="Give many dead actions up", tag=TAG,
          permission="admin", body=ActionErrorsIn, out=OutcomeOut, description=MANY)
def dismiss_action_errors(principal: Principal, body: dict[str, Any]) -> Any:
    return _many(principal, "dismiss", body)
