"""Flask blueprints: the UI (forms), the REST API and inbound hooks."""

from __future__ import annotations

from flask import Blueprint


def blueprints() -> list[tuple[Blueprint, str]]:
    """(blueprint, URL prefix below the extension's prefix)."""
    from crm_journeys.web.api.blueprint import api
    from crm_journeys.web.health import health
    from crm_journeys.web.hooks.esp import esp_hooks
    from crm_journeys.web.hooks.install import install
    from crm_journeys.web.hooks.integrations import hooks
    from crm_journeys.web.hooks.mail_links import mail_links
    from crm_journeys.web.hooks.sms import sms_hooks
    from crm_journeys.web.ui import ui

    return [(health, ""), (api, "/api"), (ui, ""), (sms_hooks, ""), (hooks, ""), (install, ""), (mail_links, ""),
            (esp_hooks, "")]
