"""Twilio's Programmable Messaging REST API (2010-04-01): send a text, find one sent earlier.

Authentication is HTTP Basic with the account SID and auth token, or with an API key's
SID and secret (the account SID stays in the path). Twilio's error body is
``{"code", "message", "more_info", "status"}``; its code decides how the outbox reacts:

- 429 / 20429 (too many requests) and 5xx: retriable, honouring ``Retry-After``. A 429
  means no message was created, so the retry sends without a lookup (``NotCreated``).
- 21211 (invalid 'To' number), 20003 (authentication) and other 4xx: fatal, with
  Twilio's code and message, so the row dead-letters with the reason.
- 21610 (the recipient replied STOP): ``Unsubscribed``; the caller records the opt-out.

A connection failure or timeout leaves it unknown whether Twilio created the message:
``MaybeSent``, and the caller looks the message up (``find_sent``) before any resend.
Secrets never appear in an error message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from crm_journeys.connectors.http import parse_retry_after
from crm_journeys.errors import FatalConnectorError, RetriableConnectorError

API_URL = "https://api.twilio.com"
TIMEOUT = (5.0, 20.0)
LOOKUP_PAGES = 5  # pages of 50 newest messages to one number: a lost attempt is minutes old
CLOCK_SLACK = timedelta(minutes=2)  # Twilio's clock and ours may differ a little


@dataclass(frozen=True)
class TwilioConfig:
    """One tenant's Twilio settings (from its encrypted credentials)."""

    account_sid: str
    auth_token: str = ""
    api_key_sid: str = ""
    api_key_secret: str = ""
    messaging_service_sid: str = ""
    from_number: str = ""
    public_url: str = ""  # how Twilio reaches this service (status callbacks, signatures)
    default_region: str = ""
    api_url: str = API_URL

    @classmethod
    def from_settings(cls, raw: dict[str, Any]) -> TwilioConfig:
        known = {k: str(v).strip() for k, v in raw.items() if k in cls.__dataclass_fields__ and v}
        if not known.get("account_sid"):
            raise FatalConnectorError("SMS is not set up: add the Twilio account SID and auth token "
                                      "under Integrations → Twilio SMS")
        return cls(**known)

    @property
    def auth(self) -> tuple[str, str]:
        if self.api_key_sid and self.api_key_secret:
            return self.api_key_sid, self.api_key_secret
        if not self.auth_token:
            raise FatalConnectorError("Twilio SMS has no auth token or API key to send with")
        return self.account_sid, self.auth_token

    def sender(self) -> dict[str, str]:
        """``MessagingServiceSid`` when set (Twilio picks the number), else ``From``."""
        if self.messaging_service_sid:
            return {"MessagingServiceSid": self.messaging_service_sid}
        if self.from_number:
            return {"From": self.from_number}
        raise FatalConnectorError("Twilio SMS has neither a Messaging Service SID nor a From number")

    def messages_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"


class NotCreated(RetriableConnectorError):
    """Twilio refused before creating a message (429): sending again cannot double it."""


class MaybeSent(RetriableConnectorError):
    """The answer was lost: Twilio may have created the message."""


class Unsubscribed(FatalConnectorError):
    """Twilio 21610: the recipient opted out (replied STOP) of this sender."""


def send(cfg: TwilioConfig, to: str, body: str, status_callback: str | None) -> dict[str, Any]:
    """Create a Message; returns Twilio's Message resource (``sid``, ``status``, ``num_segments``)."""
    form = {"To": to, "Body": body, **cfg.sender()}
    if status_callback:
        form["StatusCallback"] = status_callback
    try:
        resp = requests.post(cfg.messages_url(), data=form, auth=cfg.auth, timeout=TIMEOUT)
    except requests.ConnectTimeout as exc:
        raise NotCreated("Twilio unreachable: the connection timed out") from exc
    except requests.ConnectionError as exc:
        if _never_connected(exc):
            raise NotCreated("Twilio unreachable: could not connect") from exc
        raise MaybeSent("Twilio's answer was lost (connection dropped)") from exc
    except requests.Timeout as exc:
        raise MaybeSent("Twilio did not answer in time") from exc
    if resp.status_code in (200, 201):
        return resp.json()
    raise _error(resp)


def find_sent(cfg: TwilioConfig, to: str, since: datetime, body_sha256: str) -> dict[str, Any] | None:
    """The message to ``to`` created at or after ``since`` whose body hashes to ``body_sha256``.

    A little before ``since`` counts too: two clocks may disagree, and taking an
    identical text sent a minute earlier for ours errs towards not texting twice.

    The Messages list is newest first; it is read page by page until messages are older
    than ``since``. Raises ``RetriableConnectorError`` when Twilio cannot be read: an
    unknown outcome is never resolved by sending again."""
    url: str | None = cfg.messages_url()
    params: dict[str, Any] | None = {"To": to, "PageSize": 50}
    for _ in range(LOOKUP_PAGES):
        if url is None:
            break
        try:
            resp = requests.get(url, params=params, auth=cfg.auth, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise RetriableConnectorError(f"Twilio lookup failed: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise _error(resp)
        page = resp.json()
        for message in page.get("messages") or []:
            created = _twilio_time(message.get("date_created"))
            if created is not None and created < since - CLOCK_SLACK:
                return None
            if hashlib.sha256((message.get("body") or "").encode()).hexdigest() == body_sha256:
                return message
        next_uri = page.get("next_page_uri")
        url, params = (f"{cfg.api_url.rstrip('/')}{next_uri}" if next_uri else None), None
    return None


def _error(resp: requests.Response) -> Exception:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    code, message = body.get("code"), str(body.get("message") or resp.reason or "")[:300]
    text = f"Twilio {resp.status_code}" + (f" error {code}" if code else "") + f": {message}"
    if resp.status_code == 429 or code == 20429:
        return NotCreated(text, retry_after=parse_retry_after(resp.headers.get("Retry-After"),
                                                              datetime.now().astimezone()))
    if resp.status_code >= 500:
        return MaybeSent(text)
    if code == 21610:
        return Unsubscribed(text, resp.status_code)
    return FatalConnectorError(text, resp.status_code)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """A connection that was never made (refused, unresolvable) sent nothing; one that
    dropped after the request went out may have created the message."""
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | NameResolutionError)


def _twilio_time(text: Any) -> datetime | None:
    """Twilio's RFC 2822 dates (``Wed, 18 Aug 2010 20:01:40 +0000``)."""
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(str(text)) if text else None
    except (TypeError, ValueError):
        return None
