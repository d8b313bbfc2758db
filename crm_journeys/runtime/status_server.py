"""``crm-journeys worker --metrics-port``: ``/metrics`` and ``/healthz`` of a worker process.

A worker has no web app, so it serves these two pages itself from a small stdlib WSGI
server on 127.0.0.1 (a scraper or supervisor on the same host reads them): ``/metrics`` as
the web app's (``runtime.backlog``), ``/healthz`` with each loop's time since its last
pass, 503 when a loop is stale.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from crm_journeys.runtime.backlog import CONTENT_TYPE_LATEST, MetricsPage

if TYPE_CHECKING:
    from crm_journeys.runtime.worker import Worker


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # scrapes every few seconds: not log lines
        pass


def serve_status(worker: Worker, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Start serving in a daemon thread; ``shutdown()`` the returned server to stop."""
    page = MetricsPage(worker.runtime)

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [page.render()]
        if path == "/healthz":
            loops = worker.health()
            stale = [name for name, loop in loops.items() if loop["stale"]]
            body = {"status": "stalled" if stale else "ok", "worker": worker.worker_id, "loops": loops,
                    "problems": [f"worker loop {name} stalled" for name in stale]}
            start("503 Service Unavailable" if stale else "200 OK", [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    server = make_server(host, port, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="crm-journeys-status", daemon=True).start()
    return server
