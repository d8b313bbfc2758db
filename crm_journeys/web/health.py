"""``/healthz``: the database answers and the embedded worker's loops are alive;
``/metrics``: Prometheus text (``crm_journeys.metrics``, ``runtime.backlog``).

Each loop (``runtime.worker``) reports the seconds since its last good pass; the answer is
503 when the database does not answer, the worker thread died, or a loop is stale (it has
not completed a pass for longer than its limit: stuck, or failing on every pass), so a
load balancer or supervisor notices a worker that stopped working without dying.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from crm_journeys.web.state import state

health = Blueprint("crm_journeys_health", __name__)
log = logging.getLogger(__name__)


@health.get("/healthz")
def healthz():
    st = state()
    problems: list[str] = []
    try:
        with st.db.unit_of_work() as s:
            s.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("healthz: the database does not answer: %s", type(exc).__name__)
        problems.append("database does not answer")
    worker_alive = st.worker_thread.is_alive() if st.worker_thread else None
    if worker_alive is False:
        problems.append("worker thread died")
    loops = st.worker.health() if st.worker is not None else {}
    problems += [f"worker loop {name} stalled" for name, loop in loops.items() if loop["stale"]]
    body = {"status": "stalled" if problems else "ok", "database": st.db.engine.dialect.name,
            "worker": worker_alive, "loops": loops, "problems": problems}
    return jsonify(body), 503 if problems else 200


@health.get("/metrics")
def metrics():
    """Counts and backlogs only (no contact data, no secrets); like /healthz it needs no
    login, for the scraper. Lane names carry tenant ids and webhook host names."""
    from crm_journeys.runtime.backlog import CONTENT_TYPE_LATEST, MetricsPage

    st = state()
    if st.metrics_page is None:
        st.metrics_page = MetricsPage(st.runtime)
    return Response(st.metrics_page.render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
