"""OAuth helpers against fake authorization servers, and connectors renewing after a 401."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_journeys.connectors.dynamics import DynamicsConnector
from crm_journeys.connectors.http import HostLimits, sleep_on
from crm_journeys.connectors.hubspot import HubSpotConnector
from crm_journeys.connectors.oauth import (
    OAuthClient,
    TokenKeeper,
    dynamics_app,
    hubspot_app,
    new_state,
    pkce_pair,
    salesforce_app,
)
from crm_journeys.connectors.salesforce import SalesforceConnector
from crm_journeys.errors import FatalConnectorError
from tests.fakes.dynamics import FakeDynamics
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.oauth import FakeAuthorizationServer
from tests.fakes.salesforce import FakeSalesforce

CLIENT_ID, CLIENT_SECRET = "app-123", "client-secret-0f9e8d7c"
REDIRECT = "https://journeys.example/install/callback"


def server(app_kind: str, **kw):
    paths = {"hubspot": ("/oauth/authorize", "/oauth/v1/token"),
             "salesforce": ("/services/oauth2/authorize", "/services/oauth2/token"),
             "dynamics": ("/organizations/oauth2/v2.0/authorize",
                          "/organizations/oauth2/v2.0/token")}[app_kind]
    return FakeAuthorizationServer(*paths, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **kw)


def click_allow(url: str) -> dict[str, str]:
    """The browser leg: the server redirects back with a code and our state."""
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def test_hubspot_authorization_code_then_refresh():
    with server("hubspot") as auth:
        app = hubspot_app(api=auth.url, app=auth.url)
        oauth = OAuthClient(app, CLIENT_ID, CLIENT_SECRET, clock=auth.clock)
        state = new_state()
        url = oauth.authorization_url(REDIRECT, state)
        assert "crm.objects.contacts.write" in parse_qs(urlsplit(url).query)["scope"][0]
        back = click_allow(url)
        assert back["state"] == state
        tokens = oauth.exchange_code(back["code"], REDIRECT)
        assert tokens.refresh_token and tokens.expires_at is not None
        renewed = oauth.refresh(tokens.refresh_token)
        assert renewed.access_token != tokens.access_token
        assert renewed.refresh_token == tokens.refresh_token  # HubSpot keeps it
        with pytest.raises(FatalConnectorError, match="invalid_grant"):
            oauth.exchange_code(back["code"], REDIRECT)  # a code works once


def test_salesforce_web_server_flow_with_pkce_returns_the_instance_url():
    with server("salesforce", extra={"instance_url": "https://acme.my.salesforce.com",
                                     "id": "https://login.salesforce.com/id/00D/005"}) as auth:
        oauth = OAuthClient(salesforce_app(auth.url), CLIENT_ID, CLIENT_SECRET, clock=auth.clock)
        verifier, challenge = pkce_pair()
        back = click_allow(oauth.authorization_url(REDIRECT, new_state(), challenge))
        with pytest.raises(FatalConnectorError, match="PKCE"):
            oauth.exchange_code(back["code"], REDIRECT, "wrong-verifier")
        back = click_allow(oauth.authorization_url(REDIRECT, new_state(), challenge))
        tokens = oauth.exchange_code(back["code"], REDIRECT, verifier)
        assert tokens.as_credentials()["instance_url"] == "https://acme.my.salesforce.com"


def test_salesforce_jwt_bearer_flow():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with server("salesforce") as auth:
        auth.public_key = key.public_key()
        oauth = OAuthClient(salesforce_app(auth.url), CLIENT_ID, clock=auth.clock)
        tokens = oauth.jwt_bearer("integration@acme.example", pem, "https://login.salesforce.com")
        assert tokens.access_token and tokens.refresh_token is None
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = other.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        with pytest.raises(FatalConnectorError, match="invalid_grant"):
            oauth.jwt_bearer("integration@acme.example", forged, "https://login.salesforce.com")


def test_entra_id_rotates_refresh_tokens_and_the_keeper_stores_them(caplog):
    caplog.set_level(logging.DEBUG)
    with server("dynamics", rotate_refresh=True) as auth:
        app = dynamics_app("https://acme.crm.dynamics.com", login_url=auth.url)
        oauth = OAuthClient(app, CLIENT_ID, CLIENT_SECRET, clock=auth.clock)
        back = click_allow(oauth.authorization_url(REDIRECT, new_state()))
        first = oauth.exchange_code(back["code"], REDIRECT)
        stored: list[dict] = []
        keeper = TokenKeeper(oauth, first.as_credentials(), stored.append)
        keeper()
        keeper()  # uses the rotated token, not the first one
        assert len(stored) == 2 and stored[1]["refresh_token"] != first.refresh_token
        assert oauth.client_credentials().access_token
        assert CLIENT_SECRET not in caplog.text and first.refresh_token not in caplog.text


@pytest.mark.parametrize("host_kind", ["hubspot", "salesforce", "dynamics"])
def test_connector_renews_its_token_after_a_401(host_kind):
    fake_host = {"hubspot": FakeHubSpot, "salesforce": FakeSalesforce,
                 "dynamics": FakeDynamics}[host_kind]()
    with fake_host as crm, server(host_kind, clock=crm.clock) as auth:
        auth.on_issue = lambda token: setattr(crm, "token", token)
        ref = crm.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")
        stale = crm.token
        auth.refresh_tokens.add("rt-initial")
        crm.token = "rotated-by-the-host"  # our access token no longer works
        stored: list[dict] = []
        creds = {"access_token": stale, "refresh_token": "rt-initial", "client_id": CLIENT_ID,
                 "client_secret": CLIENT_SECRET}
        context = {"clock": crm.clock, "sleep": sleep_on(crm.clock), "limits": HostLimits(),
                   "on_credentials_update": stored.append}
        connector = {
            "hubspot": lambda: HubSpotConnector({"base_url": crm.url, "oauth_api_url": auth.url},
                                                creds, **context),
            "salesforce": lambda: SalesforceConnector(
                {"login_url": auth.url}, {**creds, "instance_url": crm.url}, **context),
            "dynamics": lambda: DynamicsConnector(
                {"environment_url": crm.url, "login_url": auth.url}, creds, **context),
        }[host_kind]()
        assert connector.fetch_contact(ref).email == "ada@example.com"
        assert stored and stored[-1]["access_token"] == crm.token

