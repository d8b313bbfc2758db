"""The ``crm-journeys`` command, run as a user would (click's runner, real files, real DB)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crm_journeys.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_validate_good_and_bad(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", str(EXAMPLES / "welcome_promo.json")])
    assert ok.exit_code == 0 and "valid (4 steps" in ok.output
    bad = json.loads((EXAMPLES / "welcome_promo.json").read_text())
    bad["steps"][0]["next"] = "nowhere"
    bad["steps"][2]["next"] = "nowhere_either"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "steps[0].next" in result.output and "steps[2].next" in result.output
    assert "Traceback" not in result.output


def test_simulate_reports_branches_and_actions(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"at": "2026-04-01T08:00:00Z", "type": "subscribed", "key": "newsletter", "email": "a@x.example"},
        {"at": "2026-04-01T08:00:00Z", "type": "subscribed", "key": "newsletter", "email": "b@x.example"},
        {"at": "2026-04-02T10:00:00Z", "type": "email_opened", "key": "welcome", "email": "a@x.example"},
    ]))
    result = CliRunner().invoke(main, ["simulate", str(EXAMPLES / "welcome_promo.json"), "--events", str(events),
                                       "--until", "2026-04-10T00:00:00Z"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [a["step"] for a in report["contacts"]["a@x.example"]["actions"]] == ["welcome", "promo"]
    assert [a["step"] for a in report["contacts"]["b@x.example"]["actions"]] == ["welcome", "reminder"]
    assert report["steps"]["opened_welcome"] == {"hold": 2, "branch:yes": 1, "branch:no": 1}
    yes = [t for t in report["contacts"]["a@x.example"]["timeline"] if t["kind"] == "branch"][0]
    assert yes["at"].startswith("2026-04-04T08:00") and "condition true" in yes["why"]


def test_publish_import_export_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_JOURNEYS_INSTANCE", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    published = runner.invoke(main, ["--database", url, "publish", str(EXAMPLES / "post_sale_followup.json")])
    assert published.exit_code == 0 and "version 1" in published.output
    exported = runner.invoke(main, ["--database", url, "export", "1"])
    assert json.loads(exported.output)["name"] == "Post-sale follow-up"
    imported = runner.invoke(main, ["--database", url, "import", str(EXAMPLES / "birthday_greetings.json")])
    assert "draft journey 2" in imported.output


def test_demo_seeds_contacts_and_journeys(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_JOURNEYS_INSTANCE", str(tmp_path))
    result = CliRunner().invoke(main, ["--database", f"sqlite:///{tmp_path / 'demo.db'}", "demo"])
    assert result.exit_code == 0, result.output
    assert result.output.count("published journey") == 5
    assert "synced 5 sandbox contacts" in result.output
