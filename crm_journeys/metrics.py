"""Prometheus metrics counted in this process (prometheus_client).

What the process itself sees is counted here: decisions, wake-up lateness, every request to
a host by host and status, 429s. What the database knows (backlogs, the oldest event,
outbox rows per action and state, parked lanes, budgets) is read at scrape time by
``runtime.backlog``. The web app serves both at ``/metrics``; ``crm-journeys worker
--metrics-port`` serves them for a worker process.

Our own registry, not prometheus_client's global one, so that an app embedded in a host
app never collides with the host's metrics, and tests can build many apps in a process.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

DECISIONS = Counter("crm_journeys_decisions", "Inbox events and due wake-ups decided on.",
                    ["kind"], registry=REGISTRY)
WAKEUP_LATENESS = Histogram("crm_journeys_wakeup_lateness_seconds",
                            "How late a wake-up fired after it was due.", registry=REGISTRY,
                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
HOST_REQUESTS = Counter("crm_journeys_host_requests", "Requests sent to a host (CRM, webhook), by status.",
                        ["host", "status"], registry=REGISTRY)
RATE_LIMITED = Counter("crm_journeys_host_rate_limited", "429 answers from a host.", ["host"],
                       registry=REGISTRY)
DELIVERIES = Counter("crm_journeys_deliveries", "Outbox rows run, by action and outcome (done, retry, dead).",
                     ["action", "outcome"], registry=REGISTRY)


def host_answered(host: str, status: int | str) -> None:
    HOST_REQUESTS.labels(host, str(status)).inc()
    if status == 429:
        RATE_LIMITED.labels(host).inc()


def wakeups_fired(now: datetime, due: Iterable[datetime]) -> None:
    n = 0
    for at in due:
        WAKEUP_LATENESS.observe(max(0.0, (now - at).total_seconds()))
        n += 1
    if n:
        DECISIONS.labels("wakeup").inc(n)
