"""Delivering messages over SMTP, with TLS chosen by the URL and errors sorted by how the
outbox must react.

``smtps://`` is implicit TLS (port 465); ``smtp://`` upgrades with STARTTLS whenever the
server offers it, and refuses to send a password over a connection that did not, unless
the tenant allows it for a local relay (``smtp_allow_plaintext_auth``). A wrong password,
a refused sender or a 5xx for the message is fatal at once (retrying changes nothing); a
5xx for the recipient is a hard bounce; 4xx answers and dropped connections are retried.
A connection is kept for the rest of the outbox pass (``SmtpPool``), so a batch of emails
costs one handshake and one login.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from crm_journeys.errors import FatalConnectorError, RetriableConnectorError

TIMEOUT = 10


class HardBounce(Exception):
    """The server refused the recipient for good (a 5xx): the address is suppressed."""


class SmtpPool:
    """Connections kept open for the rest of an outbox pass, one per server URL; the
    outbox closes the pool when its pass ends."""

    def __init__(self) -> None:
        self._open: dict[str, smtplib.SMTP] = {}
        self.connections_made = 0

    def send(self, url: str, msg: EmailMessage, settings: dict[str, Any]) -> None:
        smtp = self._open.get(url)
        if smtp is not None:
            try:
                smtp.send_message(msg)
                return
            except smtplib.SMTPServerDisconnected:  # the server closed an idle connection: open anew
                self._open.pop(url, None)
        smtp = _connect(urlsplit(url), settings)
        self.connections_made += 1
        self._open[url] = smtp
        smtp.send_message(msg)

    def discard(self, url: str) -> None:
        smtp = self._open.pop(url, None)
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def close(self) -> None:
        for url in list(self._open):
            self.discard(url)


def deliver(url: str, msg: EmailMessage, settings: dict[str, Any], pool: SmtpPool | None = None) -> None:
    """Send ``msg``; raises ``HardBounce``, ``FatalConnectorError`` or ``RetriableConnectorError``."""
    scheme = urlsplit(url).scheme
    if scheme not in ("smtp", "smtps"):
        raise FatalConnectorError(f"smtp_url: scheme must be smtp:// or smtps://, not {scheme!r}")
    own = pool is None
    pool = pool or SmtpPool()
    try:
        pool.send(url, msg, settings)
    except smtplib.SMTPRecipientsRefused as exc:  # the connection stays good for the next message
        _refused(exc.recipients)
    except BaseException as exc:
        pool.discard(url)  # in an unknown state: the next message opens a new connection
        _classify(exc)
        raise
    finally:
        if own:
            pool.close()


def _classify(exc: BaseException) -> None:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        raise FatalConnectorError(f"SMTP authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        verdict = "refused" if 500 <= exc.smtp_code < 600 else "deferred"
        error = FatalConnectorError if verdict == "refused" else RetriableConnectorError
        raise error(f"SMTP {verdict} the message: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
    if isinstance(exc, ssl.SSLError):
        raise FatalConnectorError(f"SMTP TLS failed: {exc}") from exc
    if isinstance(exc, OSError | smtplib.SMTPException):
        raise RetriableConnectorError(f"SMTP delivery failed: {exc}") from exc


def _connect(parts: SplitResult, settings: dict[str, Any]) -> smtplib.SMTP:
    host, context = parts.hostname or "127.0.0.1", _tls_context(settings)
    if parts.scheme == "smtps":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(host, parts.port or 25, timeout=TIMEOUT)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        elif parts.username and not settings.get("smtp_allow_plaintext_auth"):
            smtp.close()
            raise FatalConnectorError("SMTP server offers no STARTTLS: refusing to send the password in clear "
                                      "(use smtps://, or allow it for a local relay: smtp_allow_plaintext_auth)")
    if parts.username:
        smtp.login(unquote(parts.username), unquote(parts.password or ""))
    return smtp


def _tls_context(settings: dict[str, Any]) -> ssl.SSLContext:
    """The system's trust store; a private CA file for an internal relay when set."""
    return ssl.create_default_context(cafile=settings.get("smtp_ca_file") or None)


def _refused(recipients: dict[str, tuple[int, bytes]]) -> None:
    code, reason = next(iter(recipients.values()))
    text = f"{code} {_text(reason)}"
    if 500 <= code < 600:
        raise HardBounce(text)
    raise RetriableConnectorError(f"recipient deferred: {text}")


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
