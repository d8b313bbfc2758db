"""A stateful fake of Twilio's Programmable Messaging REST API (2010-04-01), on loopback.

It follows the published API and error catalogue:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``, ``From``
  or ``MessagingServiceSid``, ``Body``, ``StatusCallback``; answers 201 with the Message
  resource (``sid`` ``SM…``, ``status`` ``queued``, or ``accepted`` through a Messaging
  Service, ``num_segments`` as a string, RFC 2822 dates).
- ``GET …/Messages.json`` (newest first; ``To``, ``From``, ``DateSent``, ``DateSent<``,
  ``DateSent>`` filters; ``PageSize``, ``Page``, ``next_page_uri``) and
  ``GET …/Messages/{Sid}.json``.
- HTTP Basic auth with the account SID and auth token or an API key SID and secret;
  anything else is 401 with code 20003. Errors are ``{"code", "message", "more_info",
  "status"}``: 21211 (invalid 'To' number, 400), 21610 (unsubscribed recipient, 400),
  21602/21603/21604 (missing Body/From/To, 400), 20404 (not found), 20429 (429, with
  ``Retry-After``, from ``rate_limit``).
- Twilio's default opt-out handling: an inbound STOP (or UNSUBSCRIBE, CANCEL, END, QUIT,
  STOPALL) blocks further texts from that sender to that number (21610) until START.

``report`` moves a message to ``sent``/``delivered``/``undelivered``/``failed`` and
POSTs the status callback; ``receive`` delivers an inbound text to the number's SMS URL.
Both are signed with ``X-Twilio-Signature`` computed here, independently of the code
under test (HMAC-SHA1 of the URL and the sorted POST parameters, base64, auth token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import uuid
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response

ACCOUNT_SID = "AC" + "1f" * 16
AUTH_TOKEN = "twilio-auth-token-4a7e9c"
API_KEY_SID = "SK" + "2e" * 16
API_KEY_SECRET = "twilio-api-key-secret-81b"
MESSAGING_SERVICE_SID = "MG" + "3d" * 16
SENDER = "+14155550100"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "YES", "UNSTOP"}
GSM = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
          "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€\f")
ERRORS = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
}


def twilio_error(code: int, **fmt: str) -> HostError:
    status, message = ERRORS[code]
    return HostError(status, message.format(**fmt), str(code))


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class FakeTwilio(FakeCrm):
    name = "twilio"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.messages: list[dict[str, Any]] = []  # newest last
        self.callbacks: dict[str, str] = {}  # sid -> StatusCallback URL
        self.opted_out: set[tuple[str, str]] = set()  # (sender, recipient)
        self.sms_url = ""  # where inbound texts to SENDER are posted (the number's webhook)

    # --- the API ----------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        base = "/2010-04-01/Accounts/<account>"
        return [Rule(f"{base}/Messages.json", endpoint=self.create, methods=["POST"]),
                Rule(f"{base}/Messages.json", endpoint=self.list, methods=["GET"]),
                Rule(f"{base}/Messages/<sid>.json", endpoint=self.fetch, methods=["GET"])]

    def authorized(self, request: Request) -> bool:
        auth = request.authorization
        if auth is None or f"/Accounts/{ACCOUNT_SID}/" not in request.path:
            return False
        return (auth.username, auth.password) in ((ACCOUNT_SID, AUTH_TOKEN), (API_KEY_SID, API_KEY_SECRET))

    def render_error(self, error: HostError) -> Response:
        code = int(error.code) if error.code.isdigit() else {401: 20003, 404: 20404}.get(error.status, 20001)
        headers = {"Retry-After": str(error.extra["retry_after"])} if "retry_after" in error.extra else {}
        return json_response({"code": code, "message": error.message if error.status != 401 else "Authenticate",
                              "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": error.status},
                             error.status, headers)

    def budget_response(self) -> Response:
        return self.render_error(twilio_error(20429))

    def rate_limit(self, retry_after: int = 30, times: int = 1) -> None:
        """The next ``times`` sends get Twilio's 429 (20429) before anything is created."""
        self.inject(429, {"code": 20429, "message": "Too Many Requests",
                          "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429},
                    headers={"Retry-After": str(retry_after)}, times=times,
                    when=lambda r: r.method == "POST")

    def create(self, request: Request, account: str) -> Response:
        form = request.form
        to, body = form.get("To", ""), form.get("Body", "")
        sender = form.get("From") or ""
        service = form.get("MessagingServiceSid") or ""
        if not to:
            raise twilio_error(21604)
        if not sender and not service:
            raise twilio_error(21603)
        if not body:
            raise twilio_error(21602)
        if not E164.match(to):
            raise twilio_error(21211, to=to)
        sender = sender or SENDER
        if (sender, to) in self.opted_out:
            raise twilio_error(21610)
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(self.now())
        message = {"account_sid": account, "api_version": "2010-04-01", "body": body, "date_created": now,
                   "date_updated": now, "date_sent": None, "direction": "outbound-api", "error_code": None,
                   "error_message": None, "from": sender if not service else None,
                   "messaging_service_sid": service or None, "num_media": "0",
                   "num_segments": str(_segments(body)), "price": None, "price_unit": "USD", "sid": sid,
                   "status": "accepted" if service else "queued", "to": to,
                   "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
                   "_sender": sender, "_created": self.now()}
        self.messages.append(message)
        if form.get("StatusCallback"):
            self.callbacks[sid] = form["StatusCallback"]
        return json_response(_public(message), 201)

    def list(self, request: Request, account: str) -> Response:
        args = request.args
        found = [m for m in reversed(self.messages) if _matches(m, args)]
        size = min(int(args.get("PageSize", 50)), 1000)
        page = int(args.get("Page", 0))
        chunk = found[page * size:(page + 1) * size]
        base = f"/2010-04-01/Accounts/{account}/Messages.json"
        more = (page + 1) * size < len(found)
        filters = "&".join(f"{k}={v}" for k, v in args.items() if k not in ("Page", "PageSize", "PageToken"))
        nxt = f"{base}?{filters}&PageSize={size}&Page={page + 1}" if more else None
        return json_response({"messages": [_public(m) for m in chunk], "page": page, "page_size": size,
                              "start": page * size, "end": page * size + len(chunk) - 1, "uri": request.full_path,
                              "first_page_uri": f"{base}?PageSize={size}&Page=0", "next_page_uri": nxt,
                              "previous_page_uri": None})

    def fetch(self, request: Request, account: str, sid: str) -> Response:
        message = next((m for m in self.messages if m["sid"] == sid), None)
        if message is None:
            raise twilio_error(20404, path=request.path)
        return json_response(_public(message))

    # --- what the test scripts -----------------------------------------------------------
    def outbound(self, to: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["direction"] == "outbound-api" and to in (None, m["to"])]

    def report(self, sid: str, status: str, *, error_code: int | None = None,
               forged: bool = False) -> requests.Response | None:
        """Move a message on and POST its status callback (signed), as Twilio does."""
        with self.lock:
            message = next(m for m in self.messages if m["sid"] == sid)
            message["status"], message["error_code"] = status, error_code
            if status in ("sent", "delivered"):
                message["date_sent"] = format_datetime(self.now())
            url = self.callbacks.get(sid)
        if not url:
            return None
        params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": message["_sender"],
                  "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
                  "To": message["to"]}
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return self._post_signed(url, params, forged=forged)

    def receive(self, from_: str, body: str, *, to: str = SENDER, forged: bool = False,
                advanced_opt_out: bool = False) -> requests.Response:
        """A text from ``from_`` to our number: Twilio applies its opt-out keywords, then
        POSTs the message to the number's SMS URL."""
        word = body.strip().upper()
        sid = "SM" + uuid.uuid4().hex
        with self.lock:
            if word in STOP_WORDS:
                self.opted_out.add((to, from_))
            elif word in START_WORDS:
                self.opted_out.discard((to, from_))
            self.messages.append({"sid": sid, "body": body, "to": to, "_sender": from_, "from": from_,
                                  "direction": "inbound", "status": "received", "date_created":
                                  format_datetime(self.now()), "_created": self.now(),
                                  "num_segments": str(_segments(body))})
        params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "Body": body, "From": from_,
                  "FromCountry": "US", "MessageSid": sid, "NumMedia": "0", "NumSegments": str(_segments(body)),
                  "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received", "To": to, "ToCountry": "US"}
        if advanced_opt_out and (word in STOP_WORDS or word in START_WORDS or word == "HELP"):
            params["OptOutType"] = "STOP" if word in STOP_WORDS else "START" if word in START_WORDS else "HELP"
        return self._post_signed(self.sms_url, params, forged=forged)

    def _post_signed(self, url: str, params: dict[str, str], *, forged: bool) -> requests.Response:
        token = "not-the-auth-token" if forged else AUTH_TOKEN
        headers = {"X-Twilio-Signature": signature(token, url, params),
                   "User-Agent": "TwilioProxy/1.1"}
        return requests.post(url, data=params, headers=headers, timeout=10)


def _segments(body: str) -> int:
    if all(ch in GSM for ch in body):
        return 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def _matches(message: dict[str, Any], args: Any) -> bool:
    if args.get("To") and message["to"] != args["To"]:
        return False
    if args.get("From") and message.get("_sender") != args["From"]:
        return False
    created: datetime = message["_created"]
    day = created.date().isoformat()
    if args.get("DateSent") and day != args["DateSent"]:
        return False
    if args.get("DateSent>") and day < args["DateSent>"]:
        return False
    return not (args.get("DateSent<") and day > args["DateSent<"])


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}
