"""One configuration: every command, ``serve`` and ``create_app`` meet the same database,
instance folder and keys, whatever folder they are started from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_journeys.config import resolve

CLI = [sys.executable, "-c", "from crm_journeys.cli import main; main()"]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No crm_journeys variables: only the user's data folder (here a temporary one)."""
    for key in [k for k in os.environ if k.startswith("CRM_JOURNEYS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return {**os.environ}


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_command_meets_the_same_database_from_any_folder(clean_env, tmp_path, monkeypatch) -> None:
    shown = [_cli(clean_env, tmp_path / place, "config") for place in ("a", "b/c")]
    assert shown[0] == shown[1]
    expected = tmp_path / "data" / "crm-journeys" / "crm_journeys.db"
    assert f"database_url: sqlite:///{expected}" in shown[0] and "database_from: instance folder" in shown[0]

    _cli(clean_env, tmp_path / "a", "db", "upgrade")
    token = _cli(clean_env, tmp_path / "b", "token", "create", "intake", "--tenant", "acme").strip()
    _cli(clean_env, tmp_path / "c", "demo", "--tenant", "acme")
    assert not any((tmp_path / d / "instance").exists() for d in "abc")  # nothing lands in a cwd

    monkeypatch.chdir(tmp_path / "b" / "c")  # serve's app, started from yet another folder
    from crm_journeys.app import create_app

    app = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": resolve(None).database_url})
    answer = app.test_client().post("/api/events", headers={"Authorization": f"Bearer {token}"},
                                    json={"type": "form_submitted", "key": "x", "contact": {"email": "z@x.example"}})
    assert answer.status_code in (200, 201, 202), answer.get_data(as_text=True)
    assert app.extensions["crm_journeys"].db.url == f"sqlite:///{expected}"
    assert Path(app.instance_path) == expected.parent


def test_the_environment_wins_and_config_says_so(clean_env, tmp_path) -> None:
    env = {**clean_env, "CRM_JOURNEYS_DATABASE_URL": "postgresql://u:hunter2@db.example/x",
           "CRM_JOURNEYS_INSTANCE": str(tmp_path / "inst"), "CRM_JOURNEYS_SECRET_KEY": "k" * 44}
    shown = _cli(env, tmp_path / "a", "config")
    assert "database_from: CRM_JOURNEYS_DATABASE_URL" in shown
    assert "hunter2" not in shown and "k" * 44 not in shown  # never a password or a key
    assert f"instance: {tmp_path / 'inst'}" in shown and "secret_key_from: CRM_JOURNEYS_SECRET_KEY" in shown
    assert "database_from: --database" in _cli(env, tmp_path / "a", "--database", "sqlite:///x.db", "config")


def test_lanes_command_sets_and_shows_a_budget(clean_env, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'lanes.db'}"
    assert "no lane" in _cli(clean_env, tmp_path, "--database", url, "lanes")
    assert "30 deliveries per minute" in _cli(clean_env, tmp_path, "--database", url, "lanes", "budget", "3:crm", "30")
    assert "3:crm: open, 0 failures in a row, budget 30/30 per minute left" in \
        _cli(clean_env, tmp_path, "--database", url, "lanes")
    refused = subprocess.run([*CLI, "--database", url, "lanes", "budget", "crm", "5"], cwd=tmp_path,
                             env=clean_env, capture_output=True, text=True)
    assert refused.returncode == 2 and "a lane is <tenant id>:<host>" in refused.stderr
