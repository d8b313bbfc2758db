"""``crm-journeys outbox list | retry | dismiss`` on a real database: what it prints, the
counts, refusals on stderr with exit status 1, and the tenant filter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import select

from crm_journeys.cli import main
from crm_journeys.errors import RetriableConnectorError
from crm_journeys.runtime.worker import advance_to
from crm_journeys.storage.models import Tenant
from tests.conftest import Harness
from tests.refusing_host import LEAD_JOURNEY, RefusingHost, missing_property


def slug_of(harness: Harness) -> str:
    with harness.db.unit_of_work() as s:
        return str(s.scalar(select(Tenant.slug).where(Tenant.id == harness.tenant_id)))


def test_list_retry_and_dismiss_from_the_command_line(database, clock, monkeypatch):
    host = RefusingHost(monkeypatch)
    shop, other = Harness(database, clock), Harness(database, clock)
    for harness in (shop, other):
        harness.publish(LEAD_JOURNEY)
    host.failure = missing_property()
    for email in ("ada@example.com", "bob@example.com", "cy@example.com"):
        shop.event("form_submitted", email, key="demo")
    other.event("form_submitted", "zed@example.com", key="demo")
    shop.run()
    host.failure = RetriableConnectorError("503 Service Unavailable")
    shop.event("form_submitted", "dee@example.com", key="demo")
    shop.run()
    host.failure = None
    ada, bob, cy, dee = (r.id for r in shop.outbox())
    [zed] = (r.id for r in other.outbox())
    run = CliRunner().invoke

    listed = run(main, ["--database", database.url, "outbox", "list", "--tenant", slug_of(shop)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == f"{slug_of(shop)}: 4 failed actions"
    assert [int(line.split()[0]) for line in lines[1::2]] == [dee, cy, bob, ada]
    assert "retrying" in lines[1] and "next attempt" in lines[1] and "503 Service Unavailable" in lines[2]
    assert "dead" in lines[3] and "REQUIRED_FIELD" in lines[4] and "contact cy@example.com" in lines[3]
    dead_only = run(main, ["--database", database.url, "outbox", "list", "--status", "dead"])
    assert f"{slug_of(shop)}: 3 failed actions" in dead_only.output
    assert f"{slug_of(other)}: 1 failed action\n" in dead_only.output

    retried = run(main, ["--database", database.url, "outbox", "retry", str(ada), str(dee), "999999"])
    assert retried.exit_code == 1 and retried.stdout == "retried 1 action\n"
    assert f"Action {dee} cannot be retried: it is still being retried" in retried.stderr
    assert "Action 999999 cannot be retried: there is no such action." in retried.stderr
    wrong_tenant = run(main, ["--database", database.url, "outbox", "dismiss", str(zed), "--tenant", slug_of(shop)])
    assert wrong_tenant.exit_code == 1 and "there is no such action" in wrong_tenant.stderr
    dismissed = run(main, ["--database", database.url, "outbox", "dismiss", str(bob)])
    assert dismissed.exit_code == 0 and dismissed.output == "dismissed 1 action\n"
    everything = run(main, ["--database", database.url, "outbox", "retry", "--all-dead", "--tenant", slug_of(shop)])
    assert everything.exit_code == 0 and everything.output == "retried 1 action\n"  # cy; zed is another tenant's
    # the command stamps rows with the real clock: run the worker until past it
    advance_to(shop.worker, clock, max(datetime.now(UTC), clock.now()) + timedelta(days=1))
    assert {r.id: r.status for r in shop.outbox()} == {ada: "done", bob: "dismissed", cy: "done", dee: "done"}
    assert len(shop.crm_records("lead")) == 3 and [r.status for r in other.outbox()] == ["dead"]

    assert run(main, ["--database", database.url, "outbox", "retry"]).exit_code == 2
    assert run(main, ["--database", database.url, "outbox", "retry", "1", "--all-dead"]).exit_code == 2
    unknown = run(main, ["--database", database.url, "outbox", "list", "--tenant", f"nope-{uuid.uuid4().hex[:4]}"])
    assert unknown.exit_code == 2 and "no tenant" in unknown.output

