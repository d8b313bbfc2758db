"""plugin_manifest.json: current with the registries, valid against its schema; settings
validated against it with clear errors; the install CLI and failed installs."""

from __future__ import annotations

import json

import jsonschema
import pytest
from click.testing import CliRunner

from crm_journeys.cli import main
from crm_journeys.connectors.http import HostLimits
from crm_journeys.connectors.oauth import HUBSPOT_SCOPES
from crm_journeys.connectors.registry import connector_names
from crm_journeys.hosts import BUILT_IN
from crm_journeys.install import InstallError, install_tenant, tenant_rows, uninstall
from crm_journeys.manifest import MANIFEST_PATH, SCHEMA_PATH, build_manifest, render, schema_errors
from crm_journeys.runtime.services import Runtime
from tests.fakes.odoo import DB, LOGIN, FakeOdoo


def test_checked_in_manifest_is_current_and_valid():
    checked_in = json.loads(MANIFEST_PATH.read_text())
    assert MANIFEST_PATH.read_text() == render(), "run `crm-journeys manifest` and commit it"
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(checked_in))
    assert errors == []


def test_manifest_comes_from_the_registries():
    manifest = build_manifest()
    assert sorted(manifest["hosts"]) == connector_names()
    assert manifest["entry_points"]["connectors"]["hubspot"].endswith(":HubSpotConnector")
    assert manifest["actions"]["create_lead"]["needs"] == "create_lead"
    hubspot = manifest["hosts"]["hubspot"]
    assert set(hubspot["auth"]["scopes"]) == set(HUBSPOT_SCOPES)
    granted = {s for scopes in hubspot["capabilities"].values() for s in scopes}
    asked = set(HUBSPOT_SCOPES) | set(hubspot["auth"]["optional_scopes"])
    assert granted <= asked  # no capability needs a scope we do not ask for
    assert [w["subscription"] for w in hubspot["webhooks"]][0] == "contact.creation"
    assert "receive_webhooks" not in manifest["hosts"]["salesforce"]["capabilities"]
    assert manifest["hosts"]["odoo"]["auth"] == {"type": "api_key", "fields": ["api_key"]}
    assert {u["type"] for u in manifest["hosts"]["dynamics"]["ui_extensions"]} >= {"sitemap_subarea"}


@pytest.mark.parametrize("host", ["hubspot", "salesforce", "dynamics", "odoo", "bottlecrm"])
def test_settings_schema_agrees_with_jsonschema(host):
    schema = BUILT_IN[host].settings_schema()
    bad = {"sync_interval_seconds": -5, "custom_fields": "email", "shoe_size": 44}
    ours = schema_errors(bad, schema)
    theirs = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert ours and theirs
    assert ours["sync_interval_seconds"] == "must be at least 0"
    assert ours["custom_fields"] == "must be an array"
    assert ours["shoe_size"].startswith("is not a setting of this host")


def test_odoo_settings_errors_are_named(sqlite_db):
    runtime = Runtime(db=sqlite_db)
    with pytest.raises(InstallError) as info:
        install_tenant(runtime, "odoo", "Bad Slug", "", {"url": "ftp://x", "version": "19"},
                       {"api_key": "short"})
    assert info.value.errors == {
        "tenant": "use lowercase letters, digits and '-' (up to 80)",
        "settings.database": "is required", "settings.login": "is required",
        "settings.url": "must be an http(s) URL", "settings.version": "must be an integer",
        "credentials.api_key": "must be at least 16 characters"}
    with pytest.raises(InstallError, match="No connector 'nope'; installed: "):
        install_tenant(runtime, "nope", "x", "", {}, {})


def test_wrong_key_leaves_no_tenant_and_cli_installs_and_uninstalls(sqlite_db, tmp_path):
    with FakeOdoo() as crm:
        runtime = Runtime(db=sqlite_db, clock=crm.clock,
                          settings={"connector_context": {"limits": HostLimits()}})
        settings = {"url": crm.url, "database": DB, "login": LOGIN}
        with pytest.raises(InstallError, match="odoo did not accept the credentials .*API key"):
            install_tenant(runtime, "odoo", "acme", "", settings, {"api_key": "x" * 20})
        assert tenant_rows(sqlite_db, 1) == {name: 0 for name in tenant_rows(sqlite_db, 1)}

        runner = CliRunner()
        args = ["--database", sqlite_db.url, "install", "odoo", "--tenant", "acme",
                "--setting", f"url={crm.url}", "--setting", f"database={DB}",
                "--setting", f"login={LOGIN}", "--setting", "version=19",
                "--credential", f"api_key={crm.token}"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "installed odoo as tenant 'acme'" in result.output
        result = runner.invoke(main, ["--database", sqlite_db.url, "uninstall", "--tenant",
                                      "acme", "--yes"])
        assert result.exit_code == 0 and "cj_tenant 1" in result.output
    assert uninstall(runtime, 999) == {}


def test_manifest_cli_check(tmp_path):
    runner = CliRunner()
    out = tmp_path / "m.json"
    assert runner.invoke(main, ["manifest", "--output", str(out)]).exit_code == 0
    assert runner.invoke(main, ["manifest", "--check", "--output", str(out)]).exit_code == 0
    out.write_text("{}")
    result = runner.invoke(main, ["manifest", "--check", "--output", str(out)])
    assert result.exit_code == 1 and "stale" in result.output
