"""Outbound HTTP to URLs that users choose (call_webhook, Eventbrite's api_url): one guarded path.

A journey author or a webhook sender picks these URLs, so the server must not become their
way into the network it runs in. The guard therefore:

- resolves the host once and connects to the very address it checked (the TCP connection
  is pinned to that IP; the ``Host`` header, TLS SNI and certificate check still use the
  name), so a DNS answer that changes between check and connect (rebinding) gains nothing;
- refuses every address that is not globally routable (``ipaddress``'s ``is_global``, which
  covers loopback, private, link-local, 100.64.0.0/10 shared space, documentation and
  reserved ranges) and every multicast or unspecified address, unless an admin allows
  private targets for the tenant (multicast and unspecified stay refused even then);
- never follows a redirect: a 3xx is reported, since its ``Location`` would be a second,
  unchecked target;
- reads at most ``MAX_BODY`` bytes of the answer.

The same check runs at publish (``check_url``) and at send (``request``). The resolver is a
parameter so tests can give a host name any address without touching real DNS.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3

from crm_journeys.errors import FatalConnectorError, RetriableConnectorError

Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP addresses as text
MAX_BODY = 64 * 1024
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(FatalConnectorError):
    """The URL points where the server must not go; retrying cannot change that."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RetriableConnectorError(f"cannot resolve {host}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


def _plain(addr: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 it reaches."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def refusal(addr: Address, allow_private: bool) -> str | None:
    """Why the server must not connect to ``addr``, or None when it may."""
    addr = _plain(addr)
    if addr.is_multicast or addr.is_unspecified:
        return f"{addr} is a multicast or unspecified address"
    if not addr.is_global and not allow_private:
        return f"{addr} is a private address (not globally routable); an admin must allow private webhooks"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``ip``) and what to ask for (the rest)."""

    scheme: str
    host: str
    port: int
    path: str
    ip: str


def check_url(url: str, *, allow_private: bool = False, resolver: Resolver | None = None) -> Target:
    """Parse, resolve once and check ``url``; the returned target pins the address to use.

    Raises:
        UnsafeTarget: not an http(s) URL, or any address it resolves to is refused.
        RetriableConnectorError: the name does not resolve (DNS may be down for a while).
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}") from exc
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeTarget("only http and https URLs with a host are allowed")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the URL are not allowed")
    addresses = _addresses(host, port, resolver or system_resolver)
    for addr in addresses:  # every answer must pass: the connection may not choose the bad one
        reason = refusal(addr, allow_private)
        if reason:
            raise UnsafeTarget(f"{host}: {reason}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, str(_plain(addresses[0])))


def _addresses(host: str, port: int, resolver: Resolver) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found = resolver(host, port)
    if not found:
        raise RetriableConnectorError(f"cannot resolve {host}: no addresses")
    return [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
            timeout: float = 10.0, allow_private: bool = False, resolver: Resolver | None = None,
            pools: Pools | None = None) -> Answer:
    """Send one request to a checked, pinned address; a redirect is returned, never followed.

    With ``pools`` the connection is kept alive for the next request to the same pinned
    address (the delivery pool's webhooks); without, it is closed after the answer.

    Raises:
        UnsafeTarget: the URL or its address is refused.
        RetriableConnectorError: DNS or the connection failed, or it timed out.
    """
    target = check_url(url, allow_private=allow_private, resolver=resolver)
    pool = pools.get(target, timeout) if pools is not None else _pool(target, timeout)
    name = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal
    default_port = 443 if target.scheme == "https" else 80
    host_header = name if target.port == default_port else f"{name}:{target.port}"
    try:
        resp = pool.urlopen(method, target.path, body=body, headers={**(headers or {}), "Host": host_header},
                            redirect=False, retries=False, preload_content=False, assert_same_host=False)
        try:
            data = resp.read(MAX_BODY)
        finally:
            resp.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise RetriableConnectorError(f"{target.host} unreachable: {type(exc).__name__}") from exc
    finally:
        if pools is None:
            pool.close()
    return Answer(resp.status, dict(resp.headers), data or b"")


class Pools:
    """Keep-alive connection pools by pinned address, shared by the delivery threads.

    A pool is keyed by everything its sockets were checked for (scheme, host name, pinned
    address, port, timeout), so a name that now resolves elsewhere gets a new pool, and the
    address is still checked on every request (``check_url``). Opening a connection per
    webhook cost the worker a TCP handshake and a closed socket per delivery."""

    MAX_PER_ADDRESS = 8  # sockets kept per pinned address (more are opened and dropped)

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, str, int, float], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def get(self, target: Target, timeout: float) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.host, target.ip, target.port, timeout)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _pool(target, timeout, self.MAX_PER_ADDRESS)
            return pool

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


def _pool(target: Target, timeout: float, size: int = 1) -> urllib3.HTTPConnectionPool:
    """A pool whose sockets go to ``target.ip``; TLS still verifies ``target.host``."""
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(target.ip, target.port, timeout=limits, maxsize=size,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    return urllib3.HTTPConnectionPool(target.ip, target.port, timeout=limits, maxsize=size)
