"""OAuth 2.0 for the hosts that install through it: HubSpot, Salesforce, Dynamics 365.

The authorization-code flow (with PKCE where the host takes it), refresh, Salesforce's
JWT bearer flow and Entra ID client credentials, all through the shared HTTP client so
timeouts, retries and redaction hold here too. ``TokenKeeper`` is what a connector's
``Auth`` calls after a 401: it refreshes, hands the new credentials to whoever stores
them (refresh tokens rotate at Microsoft), and returns the new access token. No storage,
no web routes: the install flow builds on these.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from crm_journeys.clock import Clock
from crm_journeys.connectors.http import HttpClient, client_options
from crm_journeys.errors import FatalConnectorError


@dataclass(frozen=True)
class OAuthApp:
    """Where a host authorizes users and issues tokens, and what we ask for."""

    name: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    scope_separator: str = " "
    pkce: bool = False
    authorize_params: tuple[tuple[str, str], ...] = ()
    # granted where the account can (HubSpot's ``optional_scope``): without them the
    # install still works and only what needs them is refused
    optional_scopes: tuple[str, ...] = ()


HUBSPOT_SCOPES = ("oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
                  "crm.schemas.contacts.write", "crm.objects.leads.read",
                  "crm.objects.leads.write", "crm.objects.owners.read")
# Asked as optional: an account whose plan or admin does not grant it still installs, and
# only the unsubscribe write-back is refused (visibly, on its outbox row).
HUBSPOT_CONSENT_SCOPE = "communication_preferences.read_write"


def hubspot_app(api: str = "https://api.hubapi.com", app: str = "https://app.hubspot.com",
                scopes: tuple[str, ...] = HUBSPOT_SCOPES) -> OAuthApp:
    return OAuthApp("hubspot", f"{app}/oauth/authorize", f"{api}/oauth/v1/token", scopes,
                    optional_scopes=(HUBSPOT_CONSENT_SCOPE,))


def salesforce_app(login_url: str = "https://login.salesforce.com") -> OAuthApp:
    return OAuthApp("salesforce", f"{login_url}/services/oauth2/authorize",
                    f"{login_url}/services/oauth2/token", ("api", "refresh_token"), pkce=True,
                    authorize_params=(("response_type", "code"),))


def dynamics_app(environment_url: str, tenant: str = "organizations",
                 login_url: str = "https://login.microsoftonline.com") -> OAuthApp:
    resource = environment_url.rstrip("/")
    return OAuthApp("dynamics", f"{login_url}/{tenant}/oauth2/v2.0/authorize",
                    f"{login_url}/{tenant}/oauth2/v2.0/token",
                    (f"{resource}/user_impersonation", "offline_access"), pkce=True,
                    authorize_params=(("response_type", "code"), ("response_mode", "query")))


@dataclass
class TokenSet:
    """What a token endpoint answered. Secrets stay out of ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # instance_url, id, ...

    def as_credentials(self) -> dict[str, Any]:
        creds = {"access_token": self.access_token, **self.extra}
        if self.refresh_token:
            creds["refresh_token"] = self.refresh_token
        if self.expires_at:
            creds["expires_at"] = self.expires_at.isoformat()
        return creds


def new_state() -> str:
    """An unguessable ``state`` to tie the callback to the browser that started it."""
    return secrets.token_urlsafe(24)


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for PKCE with S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def oauth_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "error" in body:
        return f"{body['error']}: {body.get('error_description', '')}"[:300]
    return str(body)[:300]


class OAuthClient:
    """Talks to one app's token endpoint on behalf of one registered client."""

    def __init__(self, app: OAuthApp, client_id: str, client_secret: str | None = None,
                 **context: Any):
        self.app, self.client_id, self.client_secret = app, client_id, client_secret
        self.clock: Clock = context.get("clock") or Clock()
        parts = urlsplit(app.token_url)
        self.http = HttpClient(f"{parts.scheme}://{parts.netloc}", account=f"oauth:{parts.netloc}",
                               message_of=oauth_message, secrets=[client_secret],
                               **client_options(context))

    def authorization_url(self, redirect_uri: str, state: str,
                          code_challenge: str | None = None, **extra: str) -> str:
        params = {"client_id": self.client_id, "redirect_uri": redirect_uri, "state": state,
                  "scope": self.app.scope_separator.join(self.app.scopes),
                  **dict(self.app.authorize_params), **extra}
        if self.app.optional_scopes:
            params["optional_scope"] = self.app.scope_separator.join(self.app.optional_scopes)
        if code_challenge:
            params.update(code_challenge=code_challenge, code_challenge_method="S256")
        return f"{self.app.authorize_url}?{urlencode(params)}"

    def exchange_code(self, code: str, redirect_uri: str,
                      code_verifier: str | None = None) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        return self._token(form, secrets_=[code])

    def refresh(self, refresh_token: str) -> TokenSet:
        tokens = self._token({"grant_type": "refresh_token", "refresh_token": refresh_token},
                             secrets_=[refresh_token])
        tokens.refresh_token = tokens.refresh_token or refresh_token  # not every host rotates
        return tokens

    def client_credentials(self, scope: str | None = None) -> TokenSet:
        """Entra ID application (S2S) tokens, e.g. ``https://org.crm.dynamics.com/.default``."""
        return self._token({"grant_type": "client_credentials",
                            "scope": scope or self.app.scope_separator.join(self.app.scopes)})

    def jwt_bearer(self, username: str, private_key_pem: bytes, audience: str,
                   lifetime: timedelta = timedelta(minutes=3)) -> TokenSet:
        """Salesforce's server-to-server flow: a JWT signed with the connected app's key."""
        now = self.clock.now()
        claims = {"iss": self.client_id, "sub": username, "aud": audience,
                  "exp": int((now + lifetime).timestamp())}
        assertion = sign_rs256(claims, private_key_pem)
        return self._token({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                            "assertion": assertion}, secrets_=[assertion], with_client=False)

    def _token(self, form: dict[str, str], secrets_: list[str] | None = None,
               with_client: bool = True) -> TokenSet:
        if with_client:
            form = {**form, "client_id": self.client_id}
            if self.client_secret:
                form["client_secret"] = self.client_secret
        self.http.redact.add(*(secrets_ or []))
        response = self.http.request("POST", self.app.token_url, data=form,
                                     headers={"Accept": "application/json"})
        assert response is not None  # 404 is not allowed here, so a response came back
        body = response.json()
        if "access_token" not in body:
            raise FatalConnectorError(f"{self.app.name}: token endpoint answered no access_token")
        self.http.redact.add(body.get("access_token"), body.get("refresh_token"))
        expires = body.get("expires_in")
        known = {"access_token", "refresh_token", "expires_in", "scope", "token_type"}
        return TokenSet(body["access_token"], body.get("refresh_token"),
                        self.clock.now() + timedelta(seconds=int(expires)) if expires else None,
                        body.get("scope"), {k: v for k, v in body.items() if k not in known})


class TokenKeeper:
    """The refresh hook a connector's ``Auth`` calls after a 401.

    Refreshes once per call under a lock (concurrent 401s refresh once, not N times),
    merges the answer into the tenant's credentials and passes them to ``on_update`` so
    they are stored encrypted before the next request relies on them.
    """

    def __init__(self, oauth: OAuthClient, credentials: dict[str, Any],
                 on_update: Callable[[dict[str, Any]], None] | None = None):
        self.oauth, self.credentials, self.on_update = oauth, dict(credentials), on_update
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            refresh_token = self.credentials.get("refresh_token")
            if not refresh_token:
                raise FatalConnectorError(f"{self.oauth.app.name}: access token expired and "
                                          "no refresh token to renew it; reinstall")
            tokens = self.oauth.refresh(refresh_token)
            self.credentials.update(tokens.as_credentials())
            if self.on_update:
                self.on_update(dict(self.credentials))
            return tokens.access_token


def keeper_for(app: OAuthApp, credentials: dict[str, Any],
               context: dict[str, Any]) -> TokenKeeper | None:
    """A ``TokenKeeper`` when the credentials can refresh (refresh token and client id)."""
    if not credentials.get("refresh_token") or not credentials.get("client_id"):
        return None
    oauth = OAuthClient(app, credentials["client_id"], credentials.get("client_secret"),
                        **context)
    return TokenKeeper(oauth, credentials, context.get("on_credentials_update"))


def sign_rs256(claims: dict[str, Any], private_key_pem: bytes) -> str:
    """A compact JWS (RS256) over ``claims``."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise FatalConnectorError("the JWT bearer flow needs an RSA private key")
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
