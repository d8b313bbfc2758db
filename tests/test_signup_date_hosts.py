"""``signup_date`` from each host's own created date, installed on its fake: the mirror
holds it after the initial sync, and a signup-anniversary journey schedules every contact
a year after the day the CRM created them, with no hand-filled field."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crm_journeys.storage.journey_models import DateSchedule
from tests import test_install_hosts as hosts
from tests.sp_helpers import journey, sp
from tests.test_install_hosts import Env, install, seed


@pytest.fixture(params=["hubspot", "salesforce", "dynamics", "odoo"])
def env(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    yield from hosts.env.__wrapped__(request, tmp_path)


def test_signup_anniversary_follows_the_hosts_created_date(env: Env) -> None:
    joined = env.crm.clock.now()
    seed(env)
    install(env)
    env.drain()
    contacts = env.contacts()
    assert len(contacts) == 3
    for contact in contacts.values():
        assert contact.fields["signup_date"][:10] == joined.date().isoformat(), contact.fields
    env.publish(journey([sp("signup_anniversary", {"time": "08:00"})]))
    with env.state.db.unit_of_work() as s:
        due = sorted(d.due_at.isoformat()[:16] for d in s.scalars(
            select(DateSchedule).where(DateSchedule.tenant_id == env.tenant_id)))
    next_year = joined.date().replace(year=joined.year + 1).isoformat()
    assert due == [f"{next_year}T08:00"] * 3
