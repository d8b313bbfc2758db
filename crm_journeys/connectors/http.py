"""The one HTTP client every host adapter talks through: timeouts, retries, budgets, pages.

Adapters say *what* to call; this module decides *whether*, *how often* and *when*. It
retries 429, 5xx and connection failures with exponential backoff and full jitter,
honouring ``Retry-After``; turns a host's "daily budget spent" answer into an open circuit
(every later call fails fast with ``BudgetExhaustedError`` until the window resets);
turns every other 4xx into ``FatalConnectorError`` carrying the host's own message; paces
each account through a token bucket; walks pages so adapters never loop by hand. It never
sleeps by itself (``sleep`` and ``clock`` are injected, so tests run on virtual time) and
never writes a secret into a log line or an exception message.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from crm_journeys.clock import Clock
from crm_journeys.errors import (
    BudgetExhaustedError,
    FatalConnectorError,
    RetriableConnectorError,
)
from crm_journeys.metrics import host_answered

log = logging.getLogger("crm_journeys.connectors.http")

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# --- secrets -------------------------------------------------------------------------

_SECRET_PARAMS = ("access_token", "refresh_token", "id_token", "api_key", "apikey",
                  "hapikey", "client_secret", "password", "token", "code", "assertion",
                  "secret", "key")
_NAMES = "|".join(_SECRET_PARAMS)
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{_NAMES})=)[^&#\s\"']+")
_JSON_SECRET = re.compile(rf"(?i)(\"(?:{_NAMES}|authorization)\"\s*:\s*\")[^\"]*")
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")


class Redactor:
    """Blanks known secret values and anything that looks like a credential.

    Known values (the tenant's tokens, keys, client secrets) are replaced wherever they
    appear; bearer/basic credentials, secret-looking query parameters and JSON fields are
    masked by shape, so a host that echoes a token back in an error body cannot leak it.
    """

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        self._secrets.update(s for s in secrets if isinstance(s, str) and len(s) >= 4)

    def __call__(self, text: object) -> str:
        out = str(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(secret, "***")
        out = _AUTH_VALUE.sub(lambda m: f"{m.group(1)} ***", out)
        out = _QUERY_SECRET.sub(r"\1***", out)
        return _JSON_SECRET.sub(r"\1***", out)


# --- time ----------------------------------------------------------------------------

def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


@dataclass
class RetryPolicy:
    """How hard one call tries before handing the problem back to the outbox.

    ``max_wait`` bounds a single in-process wait: a host asking for longer (a long
    ``Retry-After``) gets a ``RetriableConnectorError`` carrying its hint instead, so a
    worker is never parked for minutes.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_wait: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class TokenBucket:
    """Client-side pacing for one account: ``rate`` requests per second, bursts of ``capacity``."""

    def __init__(self, rate: float, capacity: float, clock: Clock):
        self.rate, self.capacity, self.clock = rate, capacity, clock
        self._tokens = capacity
        self._stamp = clock.now()
        self._lock = threading.Lock()

    def reserve(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` now and return how many seconds the caller must wait first."""
        with self._lock:
            now = self.clock.now()
            elapsed = max(0.0, (now - self._stamp).total_seconds())
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._stamp = now
            self._tokens -= tokens
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class HostLimits:
    """Per-account state that outlives one connector instance: buckets and open circuits.

    Connectors are built per unit of work, but a host's budget belongs to the account, so
    this lives for the process (``DEFAULT_LIMITS``) and tests inject their own.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._circuits: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def bucket(self, account: str, rate: float, capacity: float, clock: Clock) -> TokenBucket:
        with self._lock:
            if account not in self._buckets:
                self._buckets[account] = TokenBucket(rate, capacity, clock)
            return self._buckets[account]

    def open_circuit(self, account: str, until: datetime, reason: str) -> None:
        with self._lock:
            self._circuits[account] = (until, reason)

    def open_count(self) -> int:
        """Circuits open now (for the metrics; expired ones close on their next check)."""
        now = datetime.now(UTC)
        with self._lock:
            return sum(1 for until, _ in self._circuits.values() if until > now)

    def circuit(self, account: str, now: datetime) -> tuple[datetime, str] | None:
        """The open circuit of ``account`` as ``(until, reason)``; closes it once expired."""
        with self._lock:
            entry = self._circuits.get(account)
            if entry and entry[0] <= now:
                del self._circuits[account]
                return None
            return entry


DEFAULT_LIMITS = HostLimits()


# --- pagination ----------------------------------------------------------------------

@dataclass
class Page:
    """One page of a listing: its items and the token of the next page (``None``: last)."""

    items: list[Any]
    next: Any = None
    total: int | None = None
    body: Any = None


@dataclass
class Call:
    """One request as a paginator sees it; ``url`` is relative to the client's base URL."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def dig(body: Any, path: tuple[str | int, ...] | str | int) -> Any:
    """``body[path[0]][path[1]]...`` or ``None`` when any step is missing."""
    for step in path if isinstance(path, tuple) else (path,):
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            return None
    return body


class Paginator:
    """How one host pages a listing: where the token goes and where the next one is."""

    def prepare(self, call: Call, token: Any, page_size: int) -> Call:
        return call

    def parse(self, body: Any, call: Call, token: Any, page_size: int) -> Page:
        raise NotImplementedError


@dataclass
class CursorPaginator(Paginator):
    """Opaque ``after`` cursors (HubSpot): the token goes in the query or the JSON body."""

    items: tuple[str, ...] = ("results",)
    next_token: tuple[str, ...] = ("paging", "next", "after")
    param: str = "after"
    size_param: str = "limit"
    in_body: bool = False
    total: tuple[str, ...] = ("total",)

    def prepare(self, call: Call, token: Any, page_size: int) -> Call:
        target = call.json if self.in_body else call.params
        target[self.size_param] = page_size
        if token is not None:
            target[self.param] = token
        return call

    def parse(self, body: Any, call: Call, token: Any, page_size: int) -> Page:
        return Page(dig(body, self.items) or [], dig(body, self.next_token),
                    dig(body, self.total), body)


@dataclass
class OffsetPaginator(Paginator):
    """``offset``/``limit`` pages (BottleCRM, Odoo): the last page is a short one."""

    items: tuple[str | int, ...] = ("results",)
    offset_param: str = "offset"
    limit_param: str = "limit"
    in_body: bool = False
    total: tuple[str | int, ...] | None = None

    def prepare(self, call: Call, token: Any, page_size: int) -> Call:
        target = call.json if self.in_body else call.params
        target[self.offset_param] = int(token or 0)
        target[self.limit_param] = page_size
        return call

    def parse(self, body: Any, call: Call, token: Any, page_size: int) -> Page:
        items = (body if not self.items else dig(body, self.items)) or []
        total = dig(body, self.total) if self.total else None
        offset = int(token or 0) + len(items)
        more = len(items) >= page_size and (total is None or offset < total)
        return Page(items, offset if more else None, total, body)


@dataclass
class NextLinkPaginator(Paginator):
    """Next-page URLs in the body (OData ``@odata.nextLink``, Salesforce ``nextRecordsUrl``).

    ``final`` names a link handed out with the last page (OData ``@odata.deltaLink``); it
    is kept in ``Page.body`` for the caller, not followed.
    """

    items: str = "value"
    next_link: str = "@odata.nextLink"
    total: str | None = None

    def prepare(self, call: Call, token: Any, page_size: int) -> Call:
        if token is not None:  # the link carries every parameter of the original query
            return Call("GET", token, headers=dict(call.headers))
        return call

    def parse(self, body: Any, call: Call, token: Any, page_size: int) -> Page:
        return Page(body.get(self.items) or [], body.get(self.next_link),
                    body.get(self.total) if self.total else None, body)


# --- the client ----------------------------------------------------------------------

BudgetRule = Callable[[requests.Response, datetime], datetime | None]
"""Given an error answer, the moment the host's budget resets if it says it is spent."""


def long_wait_rule(threshold: float = 60.0) -> BudgetRule:
    """A 429 asking us to stay away ``threshold`` seconds or more is about the account,
    not this request: open its circuit for that long instead of parking a worker.
    For hosts without a named daily budget (Dataverse service protection, DRF throttles)."""

    def rule(response: requests.Response, now: datetime) -> datetime | None:
        wait = parse_retry_after(response.headers.get("Retry-After"), now)
        if response.status_code == 429 and wait is not None and wait >= threshold:
            return now + timedelta(seconds=wait)
        return None

    return rule


def default_message(response: requests.Response) -> str:
    """The host's own words from an error body, wherever common APIs put them."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or response.reason or "").strip()
        if "html" in response.headers.get("Content-Type", "") or text.lower().startswith("<"):
            return "an HTML page, not an API answer (is the URL the API's address?)"
        return text[:500]
    candidates = [body, dig(body, 0), dig(body, "error"), dig(body, ("error", "data"))]
    for item in candidates:
        if isinstance(item, dict):
            for key in ("message", "error_description", "detail", "errors"):
                if item.get(key):
                    return str(item[key])[:500]
        if isinstance(item, str) and item:
            return item[:500]
    return str(body)[:500]


@dataclass
class Auth:
    """Headers that authenticate a request, and an optional refresh on 401."""

    headers: dict[str, str] = field(default_factory=dict)
    refresh: Callable[[], dict[str, str]] | None = None

    @classmethod
    def bearer(cls, token: str, refresh: Callable[[], str] | None = None) -> Auth:
        def renew() -> dict[str, str]:
            assert refresh is not None  # only called when set
            return {"Authorization": f"Bearer {refresh()}"}

        return cls({"Authorization": f"Bearer {token}"}, renew if refresh else None)


class HttpClient:
    """A requests session bound to one host account, with its retry and budget policy.

    Args:
        base_url: the host's API root; relative request paths are joined to it.
        account: key of the per-account bucket and circuit (host name + account id).
        auth: headers to send and how to refresh them after a 401.
        budget_rule: recognises a "daily budget spent" answer (see ``BudgetRule``).
        message_of: extracts the host's error message from a response.
        rate, burst: token bucket pacing for the account (``None``: unpaced).
        clock, sleep, rng: injected time and randomness; tests pass virtual ones.
        secrets: values redacted from logs and errors beyond those in ``auth``.
        on_response: called with every response (reading usage headers and the like).
    """

    def __init__(self, base_url: str, *, account: str, auth: Auth | None = None,
                 budget_rule: BudgetRule | None = None,
                 message_of: Callable[[requests.Response], str] = default_message,
                 rate: float | None = None, burst: float = 10.0,
                 retry: RetryPolicy | None = None, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 clock: Clock | None = None, sleep: Callable[[float], None] | None = None,
                 rng: random.Random | None = None, limits: HostLimits | None = None,
                 secrets: Iterable[str | None] = (), default_headers: dict[str, str] | None = None,
                 on_response: Callable[[requests.Response], None] | None = None,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/") + "/"
        self.host = urlsplit(self.base_url).netloc
        self.account, self.auth = account, auth or Auth()
        self.budget_rule, self.message_of = budget_rule, message_of
        self.retry, self.timeout = retry or RetryPolicy(), timeout
        self.clock = clock or Clock()
        self.sleep = sleep or _real_sleep
        self.rng = rng or random.Random()
        self.limits = limits or DEFAULT_LIMITS
        self.default_headers = dict(default_headers or {})
        self.on_response = on_response
        self.redact = Redactor(secrets)
        self.redact.add(*_header_secrets(self.auth.headers))
        self.bucket = (self.limits.bucket(account, rate, burst, self.clock)
                       if rate else None)
        self.session = session or _session()
        self.attempts = 0  # requests actually sent, for tests and metrics

    # --- public calls -----------------------------------------------------------------
    def get(self, url: str, **kw: Any) -> Any:
        return self.json("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.json("POST", url, **kw)

    def patch(self, url: str, **kw: Any) -> Any:
        return self.json("PATCH", url, **kw)

    def put(self, url: str, **kw: Any) -> Any:
        return self.json("PUT", url, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.json("DELETE", url, **kw)

    def json(self, method: str, url: str, **kw: Any) -> Any:
        """Send and decode a JSON answer; ``None`` for an empty body or an allowed 404."""
        response = self.request(method, url, **kw)
        if response is None or not response.content:
            return None
        return response.json()

    def page(self, call: Call, paginator: Paginator, token: Any = None,
             page_size: int = 100, **kw: Any) -> Page:
        """One page of a listing; pass ``Page.next`` back as ``token`` for the next."""
        prepared = paginator.prepare(_copy(call), token, page_size)
        body = self.json(prepared.method, prepared.url, params=prepared.params or None,
                         json=prepared.json, headers=prepared.headers, **kw)
        return paginator.parse(body or {}, prepared, token, page_size)

    def paginate(self, call: Call, paginator: Paginator, page_size: int = 100,
                 max_pages: int = 10_000, **kw: Any) -> Iterator[Any]:
        """Every item of a listing, page after page."""
        token: Any = None
        for _ in range(max_pages):
            page = self.page(call, paginator, token, page_size, **kw)
            yield from page.items
            if page.next is None:
                return
            token = page.next
        raise FatalConnectorError(f"{self.host}: more than {max_pages} pages, giving up")

    def request(self, method: str, url: str, *, params: dict[str, Any] | None = None,
                json: Any = None, data: Any = None, headers: dict[str, str] | None = None,
                idempotent: bool | None = None, allow_404: bool = False,
                ok: Callable[[requests.Response], bool] | None = None) -> requests.Response | None:
        """Send one logical request, retrying what is safe to retry.

        Args:
            idempotent: whether repeating the request after a lost answer is harmless.
                GET/PUT/DELETE are; a POST or PATCH is only when the caller says so (an
                upsert by key, a search). A non-idempotent request is never resent after
                it may have reached the host (5xx, read timeout): the error goes back to
                the outbox, whose retry searches before creating again.
            allow_404: return ``None`` instead of raising on 404.
            ok: extra test for success beyond 2xx (``False`` makes a 2xx an error).

        Raises:
            BudgetExhaustedError: the account's budget is spent (now or earlier).
            RetriableConnectorError: 429/5xx/connection failures outlasting the policy.
            FatalConnectorError: any other 4xx, with the host's message.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in SAFE_METHODS
        full_url = urljoin(self.base_url, url.lstrip("/")) if "://" not in url else url
        if urlsplit(full_url).netloc != self.host:  # a link from a body must not get our token
            raise FatalConnectorError(self.redact(f"{self.host}: refusing to follow {full_url}"))
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            self._check_circuit()
            self._pace()
            try:
                response = self._send(method, full_url, params, json, data, headers)
            except requests.RequestException as exc:
                host_answered(self.host, type(exc).__name__)
                self._on_transport_error(exc, method, full_url, attempt, idempotent)
                continue
            host_answered(self.host, response.status_code)
            if self.on_response:
                self.on_response(response)
            self._check_budget(response, method, full_url)
            status = response.status_code
            if 200 <= status < 300 and (ok is None or ok(response)):
                return response
            if status == 404 and allow_404:
                return None
            if status == 401 and self.auth.refresh and not refreshed:
                refreshed = True
                self.auth.headers.update(self.auth.refresh())
                self.redact.add(*_header_secrets(self.auth.headers))
                attempt -= 1
                continue
            if status in RETRY_STATUSES:
                self._on_retriable_status(response, method, full_url, attempt, idempotent)
                continue
            raise FatalConnectorError(self._describe(response, method, full_url), status=status)

    # --- the steps of one attempt ----------------------------------------------------
    def _send(self, method: str, url: str, params: Any, json: Any, data: Any,
              headers: dict[str, str] | None) -> requests.Response:
        merged = {**self.default_headers, **self.auth.headers, **(headers or {})}
        self.attempts += 1
        return self.session.request(method, url, params=params, json=json, data=data,
                                    headers=merged, timeout=self.timeout, allow_redirects=False)

    def _check_circuit(self) -> None:
        now = self.clock.now()
        circuit = self.limits.circuit(self.account, now)
        if circuit:
            until, reason = circuit
            raise BudgetExhaustedError(
                f"{self.host}: budget spent ({reason}); circuit open until {until.isoformat()}",
                retry_after=(until - now).total_seconds())

    def _pace(self) -> None:
        if self.bucket:
            wait = self.bucket.reserve()
            if wait > 0:
                self.sleep(wait)

    def _check_budget(self, response: requests.Response, method: str, url: str) -> None:
        if self.budget_rule is None or response.status_code < 400:
            return
        now = self.clock.now()
        reset = self.budget_rule(response, now)
        if reset is None:
            return
        reason = self.redact(self.message_of(response))
        self.limits.open_circuit(self.account, reset, reason)
        log.warning("%s: budget spent on %s %s, circuit open until %s: %s", self.host,
                    method, self._path(url), reset.isoformat(), reason)
        raise BudgetExhaustedError(
            f"{self.host}: budget spent ({reason}); circuit open until {reset.isoformat()}",
            retry_after=max(0.0, (reset - now).total_seconds()))

    def _on_transport_error(self, exc: requests.RequestException, method: str, url: str,
                            attempt: int, idempotent: bool) -> None:
        what = f"{self.host}: {method} {self._path(url)} failed: {type(exc).__name__}"
        maybe_sent = not _surely_unsent(exc)
        if (maybe_sent and not idempotent) or attempt >= self.retry.max_attempts:
            raise RetriableConnectorError(self.redact(f"{what}: {exc}")) from None
        delay = self.retry.backoff(attempt, self.rng)
        log.info("%s (attempt %d/%d), retrying in %.2fs", what, attempt,
                 self.retry.max_attempts, delay)
        self.sleep(delay)

    def _on_retriable_status(self, response: requests.Response, method: str, url: str,
                             attempt: int, idempotent: bool) -> None:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
        message = self._describe(response, method, url)
        # A 429 was refused before any work; a 5xx may have done the work and lost the answer.
        if (status != 429 and not idempotent) or attempt >= self.retry.max_attempts:
            raise RetriableConnectorError(message, retry_after=retry_after)
        if retry_after is not None:
            if retry_after > self.retry.max_wait:
                raise RetriableConnectorError(message, retry_after=retry_after)
            delay = retry_after + self.rng.uniform(0.0, self.retry.base_delay)
        else:
            delay = self.retry.backoff(attempt, self.rng)
        log.info("%s (attempt %d/%d), retrying in %.2fs", message, attempt,
                 self.retry.max_attempts, delay)
        self.sleep(delay)

    def _describe(self, response: requests.Response, method: str, url: str) -> str:
        message = self.message_of(response) or response.reason or ""
        return self.redact(
            f"{self.host}: {method} {self._path(url)} -> {response.status_code}: {message}")

    def _path(self, url: str) -> str:
        parts = urlsplit(url)
        return self.redact(parts.path + (f"?{parts.query}" if parts.query else ""))


def _surely_unsent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the host (refused, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(exc, requests.ConnectionError) and (
        "NewConnectionError" in text or "Connection refused" in text)


def _header_secrets(headers: dict[str, str]) -> list[str]:
    found = []
    for name, value in headers.items():
        if name.lower() in ("authorization", "x-api-key", "api-key", "token", "x-odoo-api-key"):
            found.append(value)
            found.append(value.split(" ", 1)[-1])
    return found


def _copy(call: Call) -> Call:
    body = dict(call.json) if isinstance(call.json, dict) else call.json
    return Call(call.method, call.url, dict(call.params), body, dict(call.headers))


def _session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _real_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def client_options(context: dict[str, Any]) -> dict[str, Any]:
    """The ``HttpClient`` keywords a connector was given in its construction context.

    The runtime passes ``clock``; tests and the simulator add ``sleep``, ``rng``,
    ``limits``, ``retry`` or ``session``. Unknown context keys are ignored.
    """
    keys = ("clock", "sleep", "rng", "limits", "retry", "session", "timeout")
    options = {key: context[key] for key in keys if context.get(key) is not None}
    if "sleep" not in options and hasattr(options.get("clock"), "advance"):
        options["sleep"] = sleep_on(options["clock"])  # virtual time must not wait for real
    return options


def sleep_on(clock: Any) -> Callable[[float], None]:
    """A sleep that advances a ``VirtualClock`` instead of waiting: for tests and simulate."""

    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep
