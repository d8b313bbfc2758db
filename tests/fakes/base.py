"""What every fake host CRM shares: a real HTTP server on 127.0.0.1, state, injected faults.

A fake keeps its records in memory behind one lock, answers through werkzeug on a
loopback port in a daemon thread, and runs on a ``VirtualClock`` shared with the client
under test, so ``Retry-After`` and budget windows pass in virtual time. Tests script
faults (``inject``): an answer replacing the next matching request, either before the host
does anything (429, 503) or after it committed the write (the answer is lost).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from crm_journeys.clock import VirtualClock


class HostError(Exception):
    """Raised by a fake endpoint; the fake renders it in its host's error shape."""

    def __init__(self, status: int, message: str, code: str = "", **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    after_commit: bool = False
    when: Callable[[Request], bool] | None = None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = "" if body is None else json.dumps(body, default=str)
    return Response(text, status=status, headers=headers or {},
                    content_type="application/json" if text else None)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # the fake's access log would print query strings tests put secrets in


class FakeCrm:
    """Base of the fake hosts. Subclasses define ``rules()``, ``authorized()`` and errors."""

    name = "fake"
    token = "test-token-0123456789"
    spec: Any = None  # a tests.fakes.spec.SpecChecker when the host publishes a description

    def __init__(self, clock: VirtualClock | None = None):
        self.clock = clock or VirtualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.daily_limit: int | None = None
        self.daily_used: dict[str, int] = {}
        self.spec_violations: list[str] = []
        self._ids = itertools.count(1001)
        self.url_map = Map(self.rules(), strict_slashes=False)
        self._server: Any = None

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> FakeCrm:
        self._server = make_server("127.0.0.1", 0, self, threaded=True,
                                   request_handler=_QuietHandler)
        thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True,
                                  name=f"fake-{self.name}")
        thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeCrm:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- things tests script --------------------------------------------------------
    def inject(self, status: int, body: Any = None, *, headers: dict[str, str] | None = None,
               times: int = 1, after_commit: bool = False,
               when: Callable[[Request], bool] | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` instead."""
        with self.lock:
            self.faults.append(Fault(status, body, headers or {}, times, after_commit, when))

    def lose_next_write_response(self) -> None:
        """The next write is committed, then its answer is replaced by a 502."""
        self.inject(502, {"message": "upstream connection reset"}, after_commit=True,
                    when=lambda r: r.method in ("POST", "PATCH", "PUT", "DELETE"))

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    def next_id(self) -> int:
        return next(self._ids)

    # --- to override ----------------------------------------------------------------
    def rules(self) -> list[Rule]:
        return []

    def authorized(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def render_error(self, error: HostError) -> Response:
        return json_response({"message": error.message, "code": error.code, **error.extra},
                             error.status)

    def budget_response(self) -> Response:
        return json_response({"message": "daily limit reached"}, 429)

    def validate(self, request: Request) -> None:
        """Refuse traffic that breaks the host's published description, and remember it."""
        if self.spec is None:
            return
        errors = self.spec.request_errors(request)
        if errors:
            self.spec_violations.extend(f"{request.method} {request.path}: {e}" for e in errors)
            raise HostError(400, "; ".join(errors), "VALIDATION_ERROR")

    def validate_response(self, request: Request, response: Response) -> None:
        if self.spec is not None and response.status_code < 300:
            errors = self.spec.response_errors(request, response)
            self.spec_violations.extend(
                f"response to {request.method} {request.path}: {e}" for e in errors)

    # --- the WSGI app ---------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self.lock:
            response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.full_path.rstrip("?")))
        fault = self._take_fault(request, after_commit=False)
        if fault:
            return json_response(fault.body, fault.status, fault.headers)
        if not self.authorized(request):
            return self.render_error(HostError(401, "authentication credentials invalid",
                                               "INVALID_AUTHENTICATION"))
        day = self.now().date().isoformat()
        if self.daily_limit is not None and self.daily_used.get(day, 0) >= self.daily_limit:
            return self.budget_response()
        self.daily_used[day] = self.daily_used.get(day, 0) + 1
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            self.validate(request)
            response = endpoint(request, **args)
            self.validate_response(request, response)
        except HostError as error:
            return self.render_error(error)
        except NotFound:
            return self.render_error(HostError(404, f"no route {request.path}", "NOT_FOUND"))
        except MethodNotAllowed:
            return self.render_error(HostError(405, "method not allowed", "METHOD"))
        except HTTPException as exc:
            return self.render_error(HostError(exc.code or 400, str(exc), "HTTP"))
        fault = self._take_fault(request, after_commit=True)
        if fault:
            return json_response(fault.body, fault.status, fault.headers)
        return response

    def _take_fault(self, request: Request, after_commit: bool) -> Fault | None:
        for fault in self.faults:
            if fault.after_commit != after_commit:
                continue
            if fault.when and not fault.when(request):
                continue
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            return fault
        return None

    @staticmethod
    def body(request: Request) -> Any:
        if not request.data:
            return {}
        try:
            return json.loads(request.data)
        except ValueError:
            raise HostError(400, "body is not JSON", "INVALID_JSON") from None
