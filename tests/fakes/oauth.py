"""A fake OAuth 2.0 authorization server, shaped per host (HubSpot, Salesforce, Entra ID).

``GET <authorize>`` plays the user who clicks "allow": it redirects to ``redirect_uri``
with a one-time code and the ``state``. ``POST <token>`` honours the grants the hosts
do: authorization code (with PKCE S256 when a challenge was given), refresh token (Entra
ID rotates refresh tokens, the others keep them), client credentials, and Salesforce's
JWT bearer assertion checked against a registered public key. Errors use RFC 6749 bodies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response


class FakeAuthorizationServer(FakeCrm):
    name = "oauth"

    def __init__(self, authorize_path: str, token_path: str, *, client_id: str,
                 client_secret: str, rotate_refresh: bool = False,
                 extra: dict[str, Any] | None = None, clock: Any = None):
        self.authorize_path, self.token_path = authorize_path, token_path
        super().__init__(clock)
        self.client_id, self.client_secret = client_id, client_secret
        self.rotate_refresh, self.extra = rotate_refresh, extra or {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: set[str] = set()
        self.public_key: Any = None
        self.on_issue: Callable[[str], None] | None = None
        self.issued: list[dict[str, Any]] = []

    def rules(self) -> list[Rule]:
        return [Rule(self.authorize_path, endpoint=self.authorize, methods=["GET"]),
                Rule(self.token_path, endpoint=self.token, methods=["POST"])]

    def authorized(self, request: Request) -> bool:
        return True  # the client authenticates in the form, checked per grant

    def render_error(self, error: HostError) -> Response:
        return json_response({"error": error.code or "invalid_request",
                              "error_description": error.message}, error.status)

    def authorize(self, request: Request) -> Response:
        args = request.args
        if args.get("client_id") != self.client_id:
            raise HostError(400, "unknown client", "invalid_client")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"redirect_uri": args["redirect_uri"], "scope": args.get("scope"),
                            "challenge": args.get("code_challenge")}
        location = f"{args['redirect_uri']}?{urlencode({'code': code, 'state': args['state']})}"
        return Response(status=302, headers={"Location": location})

    def token(self, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._issue(self._check_assertion(form["assertion"]), refresh=False)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                  self.client_secret):
            raise HostError(401, "client authentication failed", "invalid_client")
        if grant == "authorization_code":
            grant_info = self.codes.pop(form.get("code", ""), None)
            if grant_info is None or grant_info["redirect_uri"] != form.get("redirect_uri"):
                raise HostError(400, "authorization code is invalid or expired", "invalid_grant")
            if grant_info["challenge"] and _s256(form.get("code_verifier", "")) != grant_info[
                    "challenge"]:
                raise HostError(400, "PKCE verification failed", "invalid_grant")
            return self._issue(grant_info["scope"], refresh=True)
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                raise HostError(400, "expired access/refresh token", "invalid_grant")
            if self.rotate_refresh:
                self.refresh_tokens.discard(token)
            return self._issue(None, refresh=self.rotate_refresh)
        if grant == "client_credentials":
            return self._issue(form.get("scope"), refresh=False)
        raise HostError(400, f"grant type {grant!r} not supported", "unsupported_grant_type")

    def _issue(self, scope: str | None, refresh: bool) -> Response:
        body: dict[str, Any] = {"access_token": f"at-{secrets.token_urlsafe(12)}",
                                "token_type": "bearer", "expires_in": 1800, **self.extra}
        if scope:
            body["scope"] = scope
        if refresh:
            body["refresh_token"] = f"rt-{secrets.token_urlsafe(12)}"
            self.refresh_tokens.add(body["refresh_token"])
        self.issued.append(body)
        if self.on_issue:
            self.on_issue(body["access_token"])
        return json_response(body)

    def _check_assertion(self, assertion: str) -> str:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header, payload, signature = assertion.split(".")
        try:
            self.public_key.verify(_unb64(signature), f"{header}.{payload}".encode(),
                                   padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise HostError(400, "invalid assertion", "invalid_grant") from None
        claims = json.loads(_unb64(payload))
        if claims["iss"] != self.client_id or claims["exp"] < self.now().timestamp():
            raise HostError(400, "invalid assertion", "invalid_grant")
        return "api"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
