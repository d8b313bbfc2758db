"""``create_app()``: crm_journeys as a standalone web application (web + optional worker)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

from crm_journeys.clock import Clock
from crm_journeys.extension import CrmJourneys


def create_app(test_config: dict[str, Any] | None = None, *, clock: Clock | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True,
                instance_path=os.environ.get("CRM_JOURNEYS_INSTANCE") and
                str(Path(os.environ["CRM_JOURNEYS_INSTANCE"]).resolve()) or None)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(SECRET_KEY=os.environ.get("CRM_JOURNEYS_WEB_SECRET") or _instance_secret(app))
    app.config.from_prefixed_env("CRM_JOURNEYS_APP")
    app.config["CRM_JOURNEYS_STANDALONE"] = True  # security headers on every answer, 404s included
    if test_config:
        app.config.update(test_config)
    CrmJourneys(app, clock=clock)
    return app


def _instance_secret(app: Flask) -> str:
    """A session-signing key kept in the instance folder, made once."""
    path = Path(app.instance_path) / "web-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
