"""The links inside the emails journeys send, answered without a login.

``/m/o/<token>.gif`` (open pixel), ``/m/c/<token>`` (tracked link: records the click and
redirects to the URL that was in the email, never to one the request names) and
``/m/u/<token>`` (the preferences page; a ``POST`` of ``List-Unsubscribe=One-Click`` is the
RFC 8058 one-click unsubscribe mail providers send). Every token that does not verify,
and every token whose send is gone, gets the same answer, so a forger cannot tell
whether a contact exists. The pixel always answers with the image.
"""

from __future__ import annotations

import base64
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, Response, current_app, redirect, render_template, request
from sqlalchemy.orm import Session
from werkzeug.wrappers.response import Response as BaseResponse

from crm_journeys.runtime.consent import SUBSCRIBED, UNSUBSCRIBED
from crm_journeys.runtime.mail_tokens import TokenData, read_token
from crm_journeys.runtime.mailing import (
    Resolved,
    change_subscription,
    is_unsubscribed,
    record_click,
    record_open,
    send_contact,
)
from crm_journeys.web.group_commit import GroupCommit
from crm_journeys.web.state import state

log = logging.getLogger(__name__)
mail_links = Blueprint("crm_journeys_mail_links", __name__)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 transparent GIF
NOT_VALID = "This link is not valid (it may be incomplete, or too old)."
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Hit:
    """One open or click, recorded in the next group commit."""

    token: TokenData
    user_agent: str = ""


@mail_links.get("/m/o/<token>.gif")
def opened(token: str) -> Response:
    data = read_token("open", token, state().runtime.clock.now())
    if data is not None:
        try:
            _hits().submit(Hit(data, request.headers.get("User-Agent", "")))
        except Exception:  # the image is answered whatever happened: a mail client shows no error
            log.exception("recording an open failed")
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@mail_links.get("/m/c/<token>")
def clicked(token: str) -> BaseResponse:
    data = read_token("click", token, state().runtime.clock.now())
    resolved = _hits().submit(Hit(data)) if data is not None and data.link is not None else None
    if resolved is None or resolved.url is None:
        return _invalid()
    response = redirect(resolved.url, code=302)
    response.headers.update(NO_STORE)
    return response


@mail_links.route("/m/u/<token>", methods=["GET", "POST"])
def preferences(token: str) -> Response | str:
    data = read_token("unsubscribe", token, state().runtime.clock.now())
    if data is None:
        return _invalid()
    st = state()
    now = st.runtime.clock.now()
    one_click = request.method == "POST" and request.form.get("List-Unsubscribe") == "One-Click"
    choice = request.form.get("choice") if request.method == "POST" else None
    with st.db.unit_of_work() as s:
        if one_click or choice in ("unsubscribe", "subscribe"):
            status = SUBSCRIBED if choice == "subscribe" else UNSUBSCRIBED
            source = "one_click" if one_click else "preferences"
            if change_subscription(s, data.tenant_id, data.public_id, status, source, now) is None:
                return _invalid()
        contact = send_contact(s, data.tenant_id, data.public_id)
        if contact is None:
            return _invalid()
        unsubscribed = is_unsubscribed(s, contact)
    if one_click:
        return Response("unsubscribed\n", mimetype="text/plain", headers=NO_STORE)
    html = render_template("crm_journeys/preferences.html", unsubscribed=unsubscribed,
                           changed=choice is not None, masked=_mask(contact.email or ""))
    return Response(html, headers=NO_STORE)


def _hits() -> GroupCommit[Hit, Resolved | None]:
    """Opens and clicks arriving together are stored in one transaction (as the events
    API's are): at a mailing's peak, one commit serves many requests."""
    found = current_app.extensions.get("crm_journeys_mail_hits")
    if found is None:
        found = current_app.extensions.setdefault("crm_journeys_mail_hits", GroupCommit(_record_hits))
    return found


def _record_hits(hits: list[Hit]) -> list[Resolved | None | BaseException]:
    st = state()
    now = st.runtime.clock.now()
    out: list[Resolved | None | BaseException] = []
    with st.db.unit_of_work() as s:
        for hit in hits:
            try:  # alone, no savepoint: nothing of a neighbour's to protect
                with s.begin_nested() if len(hits) > 1 else nullcontext():
                    out.append(_record(s, hit, now))
            except Exception as exc:
                out.append(exc)
    return out


def _record(s: Session, hit: Hit, now: datetime) -> Resolved | None:
    t = hit.token
    if t.link is not None:
        return record_click(s, t.tenant_id, t.public_id, t.link, now)
    return record_open(s, t.tenant_id, t.public_id, hit.user_agent, now)


def _invalid() -> Response:
    return Response(render_template("crm_journeys/preferences.html", invalid=NOT_VALID), status=404,
                    headers=NO_STORE)


def _mask(email: str) -> str:
    """Enough of the address for the reader to recognise it, not enough to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
