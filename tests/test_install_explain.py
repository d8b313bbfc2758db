"""A failed install answers with one sentence that says what to fix: no traceback, no HTML."""

from __future__ import annotations

import socket

import pytest

from crm_journeys.connectors.http import HostLimits
from crm_journeys.install import InstallError, install_tenant
from crm_journeys.runtime.services import Runtime
from tests.fakes.bottlecrm import FakeBottleCrm


def _install(db, url, token):
    runtime = Runtime(db=db)
    runtime.settings["connector_context"] = {"limits": HostLimits()}
    with pytest.raises(InstallError) as info:
        install_tenant(runtime, "bottlecrm", "acme", "Acme", {"url": url}, {"token": token})
    return info.value.errors["credentials"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server(sqlite_db):
    said = _install(sqlite_db, f"http://127.0.0.1:{_closed_port()}", "bcrm_pat_x")
    assert said.startswith("could not reach bottlecrm at http://127.0.0.1:")
    assert "check the URL and that the server is running" in said


def test_a_page_that_is_not_the_api(sqlite_db):
    with FakeBottleCrm() as host:
        said = _install(sqlite_db, host.url + "/crm/login", host.token)
    assert said.startswith(f"no bottlecrm API answers at {host.url}/crm/login")
    assert "<" not in said


def test_an_answer_the_connector_does_not_understand(sqlite_db):
    with FakeBottleCrm() as host:
        host.inject(200, {"surprise": True}, when=lambda r: r.path == "/api/profile/")
        said = _install(sqlite_db, host.url, host.token)
    assert said.startswith("bottlecrm at http")
    assert "answered in a way this connector does not understand (KeyError)" in said
