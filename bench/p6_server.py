"""P6's web process: the real app's events API (``POST /api/events``: bearer token,
marshmallow validation, one commit per request, answered 202) and nothing else; the
worker runs in its own process (``bench/p6_worker.py``).

``python -m bench.p6_server FOLDER DATABASE_URL [waitress|werkzeug]`` writes the port it
listens on to ``FOLDER/port`` and serves until SIGTERM. waitress is the default: a
production WSGI server with a fixed pool of threads; werkzeug's threaded development server
(what ``crm-journeys serve`` uses) is kept for comparison.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

THREADS = 8  # as many as the sender has connections: no request waits for a thread


def _stop(*_: Any) -> None:
    raise SystemExit(0)


def serve_waitress(app: Any, port_file: Path) -> None:
    from waitress import create_server

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" when saturated
    server = create_server(app, host="127.0.0.1", port=0, threads=THREADS,
                           connection_limit=100, channel_timeout=60)
    port_file.write_text(str(server.effective_port))
    server.run()


def serve_werkzeug(app: Any, port_file: Path) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    port_file.write_text(str(server.server_port))
    server.serve_forever()


def main(folder: str, url: str, server: str = "waitress") -> None:
    from crm_journeys.app import create_app

    app = create_app({"CRM_JOURNEYS_DATABASE_URL": url, "CRM_JOURNEYS_AUTO_MIGRATE": False,
                      "SECRET_KEY": "bench"})
    signal.signal(signal.SIGTERM, _stop)
    serve = serve_waitress if server == "waitress" else serve_werkzeug
    try:
        serve(app, Path(folder) / "port")
    finally:
        app.extensions["crm_journeys"].db.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:4])
