"""``X-Twilio-Signature``: how Twilio signs the requests it makes to us, and how we check it.

Twilio documents the algorithm (Security → Validating requests): take the full URL it
requested (scheme, host, path and query), append each POST parameter's name and value,
sorted by name, HMAC-SHA1 that with the account's auth token and base64 the digest. The
official helper library's ``RequestValidator`` does the same, but the SDK would bring an
HTTP stack we do not use (aiohttp, PyJWT) for these few lines, so they are written here
and tested against Twilio's own published example.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The signature Twilio sends for a POST of ``params`` to ``url``."""
    data = url + "".join(f"{k}{v}" for k, v in sorted(params, key=lambda kv: (kv[0], kv[1])))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid(auth_token: str, url: str, params: Iterable[tuple[str, str]], given: str | None) -> bool:
    """Whether ``given`` is Twilio's signature of this request (constant-time compare).

    Twilio signs the URL exactly as configured: when it includes the default port (or
    leaves it out) it may differ from what a proxy hands us, so both forms are tried, as
    the helper library does."""
    if not auth_token or not given:
        return False
    pairs = list(params)
    return any(hmac.compare_digest(compute(auth_token, candidate, pairs).encode(), given.encode())
               for candidate in _url_forms(url))


def _url_forms(url: str) -> list[str]:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    forms = [url]
    if parts.hostname and default:
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
        without = urlunsplit(parts._replace(netloc=host))
        forms += [f for f in (with_port, without) if f not in forms and (parts.port in (None, default))]
    return forms
