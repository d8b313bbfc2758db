"""Secrets at rest and in logs (item 5): sealed webhook and trigger secrets, MultiFernet
rotation, a loud warning without CRM_JOURNEYS_SECRET_KEY, query-string secrets scrubbed."""

from __future__ import annotations

import logging
import threading

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import text
from werkzeug.serving import make_server

from crm_journeys import secrets
from crm_journeys.app import create_app
from crm_journeys.runtime.key_rotation import rotate_all
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.versions import create_journey
from crm_journeys.storage.models import Journey, Tenant


@pytest.fixture
def keys(monkeypatch):  # type: ignore[no-untyped-def]
    """Set CRM_JOURNEYS_SECRET_KEY for the test; the cached cipher follows it."""
    def use(*values: bytes) -> None:
        monkeypatch.setenv(secrets.ENV_KEY, ",".join(v.decode() for v in values))
        secrets.forget_keys()

    yield use
    secrets.forget_keys()


def _raw(database, table, column, row_id):  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return conn.execute(text(f"SELECT {column} FROM {table} WHERE id = :i"), {"i": row_id}).scalar()


def test_webhook_and_trigger_secrets_are_sealed_at_rest(database, clock, keys):
    keys(Fernet.generate_key())
    with database.unit_of_work() as s:
        tenant = create_tenant(s, "sealed", "Sealed", clock.now())
        journey = create_journey(s, tenant.id, {"name": "J"}, clock.now())
        ids, plain = (tenant.id, journey.id), (tenant.webhook_secret, journey.trigger_secret)
    stored = (_raw(database, "cj_tenant", "webhook_secret", ids[0]),
              _raw(database, "cj_journey", "trigger_secret", ids[1]))
    for value, secret in zip(stored, plain, strict=True):
        assert value.startswith("sealed:") and secret not in value
    with database.unit_of_work() as s:  # the app reads them back
        assert (s.get(Tenant, ids[0]).webhook_secret, s.get(Journey, ids[1]).trigger_secret) == plain


def test_keys_rotate_with_multifernet(database, clock, keys):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    keys(old)
    with database.unit_of_work() as s:
        tenant = create_tenant(s, "rot", "Rot", clock.now(), credentials={"api_key": "k-123"})
        tid, secret = tenant.id, tenant.webhook_secret
    keys(new, old)  # the new key first: everything still decrypts
    with database.unit_of_work() as s:
        assert s.get(Tenant, tid).webhook_secret == secret
    assert rotate_all(database)["tenants"] >= 1
    keys(new)  # the old key gone: the rotated rows still open
    with database.unit_of_work() as s:
        tenant = s.get(Tenant, tid)
        assert tenant.webhook_secret == secret
        assert secrets.decrypt_json(tenant.credentials) == {"api_key": "k-123"}


def test_a_missing_key_is_a_loud_warning_naming_the_key_file(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv(secrets.ENV_KEY, raising=False)
    monkeypatch.setenv("CRM_JOURNEYS_INSTANCE", str(tmp_path))
    secrets.forget_keys()
    try:
        with caplog.at_level(logging.WARNING, logger="crm_journeys.secrets"):
            secrets.seal("x")
    finally:
        secrets.forget_keys()
    [record] = [r for r in caplog.records if r.name == "crm_journeys.secrets"]
    assert record.levelno == logging.WARNING and str(tmp_path / "secret.key") in record.getMessage()
    assert "CRM_JOURNEYS_SECRET_KEY is not set" in record.getMessage()


def test_a_query_string_secret_never_reaches_the_access_log(database, clock, caplog):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CRM_JOURNEYS_DATABASE_URL": database.url}, clock=clock)
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        create_tenant(s, "zap", "Zap", clock.now(), credentials={"integrations": {"zapier": {"secret": "zap-s3cret"}}})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            answer = requests.post(f"http://127.0.0.1:{server.server_port}/hooks/zap/zapier?secret=zap-s3cret",
                                   json={"email": "z@example.com", "zap": "z", "id": "1"}, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        app.extensions["crm_journeys"].db.dispose()
    assert answer.status_code == 202
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/hooks/zap/zapier?secret=[redacted]" in line for line in lines), lines
    assert not any("zap-s3cret" in line for line in lines)
