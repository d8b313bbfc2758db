"""Email tracking figures: tracked opens and clicks ingested per second through the web
app, and what tracking adds to a send.

``python -m bench.email_tracking [HITS] [SENDS]``

1. Ingest: HITS open-pixel and HITS tracked-link requests (each for a different send, so
   every one verifies its token, finds its send and stores one new event) over HTTP to
   the real app on waitress (8 threads, in this process), from 1 and from 4 keep-alive
   connections, against ``GET /healthz`` (routing plus one database round trip) as the
   baseline of the same run. Four connections let the group commit share transactions.
2. Send cost: SENDS marketing emails through the outbox to a real SMTP server (aiosmtpd)
   with tracking on (pixel, every link rewritten, signed tokens, List-Unsubscribe) and,
   in the same run, the same with tracking off for the tenant; only the outbox passes are
   timed (the dispatcher's work is the same in both). Three rounds each, alternating;
   the median is reported.

SQLite on a temporary file; prints one JSON object.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import update

ROUNDS = 3
BODY = ("Hello {{ contact.first_name }}, register at https://shop.example/webinar?src=mail and read "
        "https://shop.example/agenda or https://shop.example/speakers before Friday.")


def _app(folder: Path) -> Any:
    from crm_journeys.app import create_app

    return create_app({"CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}", "SECRET_KEY": "bench"})


def _sends(app: Any, count: int) -> tuple[int, list[str]]:
    """A tenant with ``count`` sent emails (each with two links) to as many contacts."""
    from crm_journeys.runtime.tenants import create_tenant
    from crm_journeys.storage.mail_models import EmailSend
    from crm_journeys.storage.models import Contact

    st = app.extensions["crm_journeys"]
    now = st.runtime.clock.now()
    with st.db.unit_of_work() as s:
        tenant = create_tenant(s, f"bench-{uuid.uuid4().hex[:6]}", "Bench", now)
        s.flush()
        contacts = [Contact(tenant_id=tenant.id, external_id=f"c{i}", email=f"c{i}@example.com", fields={},
                            tags=[], groups=[], segments=[], activity={}, updated_at=now) for i in range(count)]
        s.add_all(contacts)
        s.flush()
        ids = [uuid.uuid4().hex for _ in range(count)]
        s.add_all(EmailSend(tenant_id=tenant.id, public_id=pid, idempotency_key=f"k{i}", contact_id=c.id,
                            email_id="bench", links=["https://shop.example/a", "https://shop.example/b"],
                            status="sent", created_at=now, sent_at=now)
                  for i, (pid, c) in enumerate(zip(ids, contacts, strict=True)))
        return tenant.id, ids


def _serve(app: Any) -> tuple[Any, int]:
    """The app on waitress (8 threads) in this process, on an ephemeral loopback port."""
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return server, int(server.effective_port)


def _hammer(port: int, paths: list[str], connections: int, agent: str) -> float:
    """Requests per second sending ``paths`` over ``connections`` keep-alive connections."""
    shares = [paths[i::connections] for i in range(connections)]
    failures: list[str] = []

    def client(share: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for path in share:
            conn.request("GET", path, headers={"User-Agent": agent})
            answer = conn.getresponse()
            answer.read()
            if answer.status not in (200, 302):
                failures.append(f"{path}: {answer.status}")
        conn.close()

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[:3])
    return len(paths) / elapsed


def ingest_rate(app: Any, hits: int) -> dict[str, Any]:
    """Rounds of opens, clicks and the baseline, alternating, with 1 and 4 connections;
    medians of the rounds."""
    from crm_journeys.runtime.mail_tokens import make_token

    server, port = _serve(app)
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    tenant_id, ids = _sends(app, hits * (ROUNDS + 1) * 2)
    rates: dict[str, list[float]] = {}
    try:
        for r in range(ROUNDS + 1):  # the first round warms up and is not counted
            for c, connections in enumerate((1, 4)):
                chunk = ids[(r * 2 + c) * hits:(r * 2 + c + 1) * hits]
                runs = {"opens": [f"/m/o/{make_token('open', tenant_id, pid)}.gif" for pid in chunk],
                        "clicks": [f"/m/c/{make_token('click', tenant_id, pid, i % 2)}" for i, pid in enumerate(chunk)],
                        "healthz": ["/healthz"] * hits}
                for name, paths in runs.items():
                    rate = _hammer(port, paths, connections, agent)
                    if r:
                        rates.setdefault(f"{name}_{connections}", []).append(rate)
    finally:
        server.close()
    out: dict[str, Any] = {"hits": hits}
    for key, values in rates.items():
        out[f"{key}_per_s"] = round(statistics.median(values))
    for name in ("opens", "clicks"):
        for connections in (1, 4):
            out[f"{name}_{connections}_ratio"] = round(out[f"{name}_{connections}_per_s"]
                                                       / out[f"healthz_{connections}_per_s"], 3)
    return out


def send_cost(app: Any, sends: int) -> dict[str, Any]:
    from tests.mail_fixtures import Inbox, start

    inbox = Inbox()
    controller = start(inbox)
    try:
        tracked = [_send_round(app, controller.port, sends, tracking=True) for _ in range(1)]
        untracked = []
        for _ in range(ROUNDS):
            untracked.append(_send_round(app, controller.port, sends, tracking=False))
            tracked.append(_send_round(app, controller.port, sends, tracking=True))
        tracked = tracked[1:]  # the first round warmed caches up
    finally:
        controller.stop()
    per_tracked, per_untracked = statistics.median(tracked), statistics.median(untracked)
    return {"sends": sends, "tracked_ms_per_send": round(per_tracked * 1000, 3),
            "untracked_ms_per_send": round(per_untracked * 1000, 3),
            "send_ratio": round(per_tracked / per_untracked, 3), "messages_received": len(inbox.messages)}


def _send_round(app: Any, port: int, sends: int, *, tracking: bool) -> float:
    """Seconds per send for the outbox passes of one batch of ``sends`` emails."""
    from crm_journeys.actions.registry import installed_actions
    from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
    from crm_journeys.runtime.tenants import create_tenant
    from crm_journeys.runtime.versions import create_journey, publish
    from crm_journeys.runtime.worker import Worker
    from crm_journeys.storage.models import Tenant

    st = app.extensions["crm_journeys"]
    now = st.runtime.clock.now()
    doc = {"format_version": 1, "name": "Bench mail", "entry": {"policy": "every_time"},
           "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
           "first_step": "mail",
           "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": None,
                      "params": {"email_id": "bench", "subject": "Hi {{ contact.first_name }}", "body": BODY}}]}
    with st.db.unit_of_work() as s:
        tenant = create_tenant(s, f"b-{uuid.uuid4().hex[:8]}", "Bench", now)
        s.flush()
        s.execute(update(Tenant).where(Tenant.id == tenant.id).values(settings={
            "smtp_url": f"smtp://127.0.0.1:{port}", "public_url": "https://mail.shop.example",
            "email_tracking": tracking}))
        journey = create_journey(s, tenant.id, doc, now)
        publish(s, tenant.id, journey.id, now, actions=installed_actions())
        ingest_many(s, tenant.id, [IncomingEvent(type="form_submitted", key="x",
                                                 contact={"email": f"p{i}@example.com", "first_name": f"P{i}"})
                                   for i in range(sends)], now)
    worker = Worker(st.runtime)
    while worker.dispatcher.run_once(200):
        pass
    started = time.perf_counter()
    while worker.outbox.run_once(50):
        pass
    return (time.perf_counter() - started) / sends


def main() -> None:
    hits = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    sends = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as folder:
        app = _app(Path(folder))
        try:
            result = {**ingest_rate(app, hits), **send_cost(app, sends)}
        finally:
            app.extensions["crm_journeys"].db.dispose()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
