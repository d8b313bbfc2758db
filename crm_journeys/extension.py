"""The Flask extension: mounts crm_journeys inside a host Flask app, or in our own.

``init_app`` keeps no reference to the app; its state lives in
``app.extensions["crm_journeys"]``. Config keys are prefixed ``CRM_JOURNEYS_``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from crm_journeys.clock import Clock
from crm_journeys.config import resolve
from crm_journeys.runtime.services import Runtime
from crm_journeys.storage.db import Database
from crm_journeys.web.state import State

DEFAULTS: dict[str, Any] = {
    "CRM_JOURNEYS_DATABASE_URL": None,
    "CRM_JOURNEYS_URL_PREFIX": "",
    "CRM_JOURNEYS_RUN_WORKER": False,
    "CRM_JOURNEYS_AUTO_MIGRATE": True,
    "CRM_JOURNEYS_DEFAULT_TENANT": "default",
}


class CrmJourneys:
    def __init__(self, app: Flask | None = None, *, clock: Clock | None = None):
        self._clock = clock
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        db = Database(resolve(app.config["CRM_JOURNEYS_DATABASE_URL"], given_by="config").database_url)
        if app.config["CRM_JOURNEYS_AUTO_MIGRATE"]:
            db.upgrade()
        runtime = Runtime(db=db, clock=self._clock or Clock())
        state = State(db=db, runtime=runtime)
        app.extensions["crm_journeys"] = state
        from crm_journeys import logscrub
        from crm_journeys.web import bounds, headers

        converters = app.url_map.converters
        host_int, converters["int"] = converters["int"], bounds.BoundedInt  # for our routes only
        try:
            _register_blueprints(app, app.config["CRM_JOURNEYS_URL_PREFIX"])
        finally:
            converters["int"] = host_int
        headers.init_app(app)
        bounds.init_app(app)
        logscrub.install()
        if app.config["CRM_JOURNEYS_RUN_WORKER"]:
            state.start_worker()


def _register_blueprints(app: Flask, prefix: str) -> None:
    from crm_journeys.web import blueprints

    for blueprint, sub in blueprints():
        app.register_blueprint(blueprint, url_prefix=f"{prefix}{sub}" or None)
