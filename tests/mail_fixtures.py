"""A real SMTP server (aiosmtpd) that keeps what it receives, optionally refusing some
recipients, and helpers to read the tracking links out of a received message."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class Inbox:
    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.messages: list[bytes] = []
        self.refuse = refuse or {}
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        if session.host_name is None:  # the first EHLO of a connection (STARTTLS repeats it)
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.content)
        return "250 OK"

    def parsed(self) -> list[Message]:
        return [message_from_bytes(m) for m in self.messages]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(handler: Inbox, **kw) -> Controller:  # type: ignore[no-untyped-def]
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kw)
    controller.start()
    return controller


def parts(msg: Message) -> tuple[str, str]:
    """(plain text, html) of a received multipart/alternative message."""
    text = html = ""
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_payload(decode=True).decode()
        elif part.get_content_type() == "text/html":
            html = part.get_payload(decode=True).decode()
    return text, html


def path_of(url: str) -> str:
    return urlsplit(url).path


def pixel(msg: Message) -> str:
    return path_of(re.search(r'<img src="([^"]+)"', parts(msg)[1]).group(1))


def tracked_links(msg: Message) -> list[str]:
    return [path_of(u.rstrip(".,")) for u in re.findall(r"https://mail\.shop\.example/m/c/[^\s\"<]+", parts(msg)[0])]


def unsubscribe_url(msg: Message) -> str:
    return msg["List-Unsubscribe"].strip("<>")


def self_signed(tmp_path) -> tuple[ssl.SSLContext, str]:  # type: ignore[no-untyped-def]
    """A server TLS context for 127.0.0.1 and the CA file a client trusts it with."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


class Login:
    """An aiosmtpd authenticator accepting one user and password, noting each attempt."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password, self.attempts = user.encode(), password.encode(), 0

    def __call__(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        self.attempts += 1
        ok = auth_data.login == self.user and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)  # handled=True would mean "I answered already"
