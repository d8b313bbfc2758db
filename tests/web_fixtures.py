"""Fixtures shared by the web and API tests: a real app with two tenants, users of each
role and API tokens, and a client that speaks as one token."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from crm_journeys.app import create_app
from crm_journeys.auth import create_api_token, create_user
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.worker import Worker
from crm_journeys.web.state import State

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Api:
    """A test client speaking as one API token."""

    def __init__(self, client, token: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):
        def call(path, **kw):
            return getattr(self.client, method)(f"/api{path}", headers=self.headers, **kw)
        return call


@pytest.fixture
def app(database, clock, tmp_path):
    application = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": database.url,
                              "SECRET_KEY": "test"}, clock=clock)
    state: State = application.extensions["crm_journeys"]
    with state.db.unit_of_work() as s:
        tenants = {}
        for slug in ("acme", "globex"):
            tenant = create_tenant(s, f"{slug}-{uuid.uuid4().hex[:6]}", slug.title(), clock.now())
            tenants[slug] = tenant.id
            for role in ("admin", "editor", "viewer"):
                create_user(s, tenant.id, f"{role}@{slug}.example", "password-123", role)
        tokens = {f"{slug}_{role}": create_api_token(s, tid, f"{role} token", role=role)
                  for slug, tid in tenants.items() for role in ("admin", "editor", "viewer")}
    application.config["TEST_TENANTS"], application.config["TEST_TOKENS"] = tenants, tokens
    yield application
    state.db.dispose()


@pytest.fixture
def as_(app):
    return lambda who: Api(app.test_client(), app.config["TEST_TOKENS"][who])


def drain(app):
    Worker(app.extensions["crm_journeys"].runtime).drain()


def welcome_doc():
    return json.loads((EXAMPLES / "welcome_promo.json").read_text())
