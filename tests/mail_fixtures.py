"""A real SMTP server (aiosmtpd) that keeps what it receives, optionally refusing some
recipients, and helpers to read the tracking links out of a received message."""

from __future__ import annotations

import re
import socket
from email import message_from_bytes
from email.message import Message
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller


class Inbox:
    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.messages: list[bytes] = []
        self.refuse = refuse or {}

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
