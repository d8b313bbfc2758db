"""Delivering one message over SMTP, with TLS chosen by the URL and errors sorted by how
the outbox must react.

``smtps://`` is implicit TLS (port 465); ``smtp://`` upgrades with STARTTLS whenever the
server offers it, and refuses to send a password over a connection that did not, unless
the tenant allows it for a local relay (``smtp_allow_plaintext_auth``). A wrong password,
a refused sender or a 5xx for the message is fatal at once (retrying changes nothing); a
5xx for the recipient is a hard bounce; 4xx answers and dropped connections are retried.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from crm_journeys.errors import FatalConnectorError, RetriableConnectorError

TIMEOUT = 10


class HardBounce(Exception):
    """The server refused the recipient for good (a 5xx): the address is suppressed."""


def deliver(url: str, msg: EmailMessage, settings: dict[str, Any]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise FatalConnectorError(f"smtp_url: scheme must be smtp:// or smtps://, not {parts.scheme!r}")
    try:
        with _connect(parts, settings) as smtp:
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        _refused(exc.recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise FatalConnectorError(f"SMTP authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        if 500 <= exc.smtp_code < 600:
            raise FatalConnectorError(f"SMTP refused the message: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        raise RetriableConnectorError(f"SMTP deferred the message: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
    except ssl.SSLError as exc:
        raise FatalConnectorError(f"SMTP TLS failed: {exc}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise RetriableConnectorError(f"SMTP delivery failed: {exc}") from exc


def _connect(parts: Any, settings: dict[str, Any]) -> smtplib.SMTP:
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
