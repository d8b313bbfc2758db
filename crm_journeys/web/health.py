"""``/healthz``: the database answers and the embedded worker (if any) is alive."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from crm_journeys.extension import state

health = Blueprint("crm_journeys_health", __name__)


@health.get("/healthz")
def healthz():
    st = state()
    with st.db.unit_of_work() as s:
        s.execute(text("SELECT 1"))
    worker_alive = st.worker_thread.is_alive() if st.worker_thread else None
    return jsonify({"status": "ok", "database": st.db.engine.dialect.name, "worker": worker_alive})
