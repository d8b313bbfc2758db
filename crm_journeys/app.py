"""``create_app()``: crm_journeys as a standalone web application (web + optional worker)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from crm_journeys.clock import Clock
from crm_journeys.config import instance_folder, web_secret
from crm_journeys.extension import CrmJourneys


def create_app(test_config: dict[str, Any] | None = None, *, clock: Clock | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True, instance_path=str(instance_folder()[0]))
    app.config.from_mapping(SECRET_KEY=web_secret())
    app.config.from_prefixed_env("CRM_JOURNEYS_APP")
    app.config["CRM_JOURNEYS_STANDALONE"] = True  # security headers on every answer, 404s included
    if test_config:
        app.config.update(test_config)
    CrmJourneys(app, clock=clock)
    return app
