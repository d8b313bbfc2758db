"""``crm-journeys install bottlecrm`` against the real server, as a CRM admin types it: every
mistake answered with a sentence that says what to fix (no traceback, no HTML), and a
good install that records the integration user and prints no webhook URL."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from crm_journeys.cli import main

pytestmark = pytest.mark.bottlecrm


def install(tmp_path, url, token, slug="acme"):
    database = f"sqlite:///{tmp_path / 'cj.db'}"
    result = CliRunner().invoke(main, ["--database", database, "install", "bottlecrm",
                                       "--tenant", slug, "--setting", f"url={url}",
                                       "--credential", f"token={token}"])
    assert "Traceback" not in result.output and "<html" not in result.output.lower()
    return result, database


@pytest.mark.parametrize(("path", "who", "says"), [
    ("", "member", "role is USER; a USER sees only the contacts assigned to it and cannot "
                   "create tags: use a token of an ADMIN profile"),
    ("", None, "did not accept the credentials"),
    ("/crm/dashboard", "integration", "no bottlecrm API answers"),
])
def test_a_wrong_install_says_what_to_fix(bottlecrm, org, tmp_path, path, who, says):
    token = org.people[who].token if who else "bcrm_pat_" + "x" * 43
    result, _ = install(tmp_path, bottlecrm.url + path, token)
    assert result.exit_code != 0
    assert says in result.output


def test_a_good_install_records_the_integration_user_and_prints_no_webhook(bottlecrm, org,
                                                                            tmp_path):
    result, database = install(tmp_path, bottlecrm.url + "/api/", org.people["integration"].token)
    assert result.exit_code == 0, result.output
    assert "/hooks/crm/" not in result.output
    assert "sends no webhooks" in result.output
    from sqlalchemy import select

    from crm_journeys.storage.db import Database
    from crm_journeys.storage.models import Tenant
    db = Database(database)
    with db.unit_of_work() as s:
        tenant = s.scalar(select(Tenant))
        assert tenant.settings["integration_user_id"] == org.people["integration"].user_id
    db.dispose()
    status = CliRunner().invoke(main, ["--database", database, "status"])
    assert status.output.strip() == "acme\tbottlecrm\tok"
