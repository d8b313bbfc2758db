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

from flask import Blueprint, Response, redirect, render_template, request
from werkzeug.wrappers.response import Response as BaseResponse

from crm_journeys.extension import state
from crm_journeys.runtime.consent import SUBSCRIBED, UNSUBSCRIBED
from crm_journeys.runtime.mail_tokens import read_token
from crm_journeys.runtime.mailing import (
    change_subscription,
    is_unsubscribed,
    record_click,
    record_open,
    send_contact,
)

mail_links = Blueprint("crm_journeys_mail_links", __name__)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 transparent GIF
NOT_VALID = "This link is not valid (it may be incomplete, or too old)."
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


@mail_links.get("/m/o/<token>.gif")
def opened(token: str) -> Response:
    data = read_token("open", token)
    if data is not None:
        st = state()
        with st.db.unit_of_work() as s:
            record_open(s, data.tenant_id, data.public_id, request.headers.get("User-Agent", ""), st.runtime.clock.now())
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@mail_links.get("/m/c/<token>")
def clicked(token: str) -> BaseResponse:
    data = read_token("click", token)
    resolved = None
    if data is not None and data.link is not None:
        st = state()
        with st.db.unit_of_work() as s:
            resolved = record_click(s, data.tenant_id, data.public_id, data.link, st.runtime.clock.now())
    if resolved is None or resolved.url is None:
        return _invalid()
    response = redirect(resolved.url, code=302)
    response.headers.update(NO_STORE)
    return response


@mail_links.route("/m/u/<token>", methods=["GET", "POST"])
def preferences(token: str) -> Response | str:
    data = read_token("unsubscribe", token)
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


def _invalid() -> Response:
    return Response(render_template("crm_journeys/preferences.html", invalid=NOT_VALID), status=404,
                    headers=NO_STORE)


def _mask(email: str) -> str:
    """Enough of the address for the reader to recognise it, not enough to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
