"""Schemathesis against our own OpenAPI document (item 8): generated requests for every
operation, in-process through WSGI, as an admin token and anonymously; no answer may be a 5xx, carry a
traceback or break the documented response schema. Bounded examples and a derandomized
(fixed-seed) Hypothesis keep it quick and repeatable; SQLite only (the cases are about
the edge, not the database).

Each operation's strategy is driven by Hypothesis directly rather than through
schemathesis' pytest plugin, whose collection hook does not run on this pytest.
"""

from __future__ import annotations

import uuid

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from crm_journeys.app import create_app
from crm_journeys.auth.accounts import create_api_token
from crm_journeys.clock import VirtualClock
from crm_journeys.runtime.tenants import create_tenant
from tests.conftest import START

EXAMPLES_PER_OPERATION = 6
SKIP = {("GET", "/api/events/stream")}  # none today; a long-poll would hang a WSGI call


def test_no_operation_answers_5xx_or_breaks_its_schema(tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cj.db'}"},
                     clock=VirtualClock(START))
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        tenant = create_tenant(s, f"fuzz-{uuid.uuid4().hex[:6]}", "Fuzz", START)
        token = create_api_token(s, tenant.id, "fuzz", role="admin")
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not a corner of it
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        _fuzz(operation, token, failures)
        _fuzz(operation, None, failures, examples=2)  # anonymous callers too
    app.extensions["crm_journeys"].db.dispose()
    assert failures == []


def _fuzz(operation, token, failures, examples=EXAMPLES_PER_OPERATION):  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy())
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):  # type: ignore[no-untyped-def]
        if token:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call()
        where = f"{case.method} {case.formatted_path} -> {response.status_code}"
        if "Traceback" in response.text:
            failures.append(f"{where}: traceback in the answer")
        try:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
        except AssertionError as exc:  # schemathesis' failure groups are AssertionErrors
            failures.append(f"{where}: {str(exc)[:400]}")

    run()

