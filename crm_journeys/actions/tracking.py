"""What tracking and the unsubscribe link change in an email body (pure, no I/O).

Every http(s) URL in the rendered text and HTML becomes a tracked link; the HTML part
gets an open pixel, and both parts a visible unsubscribe line. The
URLs are returned in order: the send keeps them, and a click redirects only to one of
them (no open redirect).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape

from markupsafe import escape

URL = re.compile(r"https?://[^\s<>\"')\]]+")
TRAILING = ".,;:!?"  # sentence punctuation after a URL is not part of it


@dataclass(frozen=True)
class Body:
    text: str
    html: str
    links: list[str]


def find_links(text: str) -> list[str]:
    """Distinct URLs in order of first appearance."""
    seen: dict[str, None] = {}
    for match in URL.finditer(text):
        seen.setdefault(match.group(0).rstrip(TRAILING), None)
    return list(seen)


def build_body(text: str, html: str, *, tracked_url: Callable[[int], str] | None, pixel_url: str | None,
               unsubscribe_url: str | None) -> Body:
    """The text and HTML parts (both already rendered). ``tracked_url(i)`` is the redirect
    for the i-th link, or None to leave links alone. In HTML a URL is replaced wherever it
    stands (an ``href`` or the text), matched by its unescaped form."""
    links = find_links(text)
    index = {url: i for i, url in enumerate(links)}

    def swap(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(TRAILING)
        i = index.get(unescape(url))
        if tracked_url is None or i is None:
            return match.group(0)
        return tracked_url(i) + match.group(0)[len(url):]

    plain, marked_up = URL.sub(swap, text), URL.sub(swap, html)
    if unsubscribe_url:
        plain += f"\n\n--\nUnsubscribe or change your email preferences: {unsubscribe_url}\n"
        marked_up += (f'<p style="font-size:12px;color:#666"><a href="{escape(unsubscribe_url)}">'
                      "Unsubscribe or change your email preferences</a></p>")
    if pixel_url:
        marked_up += f'<img src="{escape(pixel_url)}" width="1" height="1" alt="" style="display:none">'
    return Body(plain, f"<html><body>{marked_up}</body></html>", links)
