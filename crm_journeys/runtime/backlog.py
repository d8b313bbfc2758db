"""What the database knows, as Prometheus gauges read at scrape time: the inbox backlog and
the age of its oldest event, outbox rows per action and state, parked lanes (open
circuits, in the database or in this process's HTTP clients) and budgets left.

A few small aggregate queries per scrape (the outbox ones read the partial index over
failing rows, ``ix_cj_outbox_failing``, and the due index); a scrape every 15 s costs
nothing next to the worker's own queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from crm_journeys.metrics import REGISTRY
from crm_journeys.runtime.lanes import describe
from crm_journeys.storage.models import InboxEvent, OutboxMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime


__all__ = ["CONTENT_TYPE_LATEST", "BacklogCollector", "MetricsPage"]


class BacklogCollector(Collector):
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.rt.clock.now()
        with self.rt.db.unit_of_work() as s:
            pending, oldest = s.execute(select(func.count(), func.min(InboxEvent.received_at))
                                        .where(InboxEvent.status == "pending")).one()
            state = case((OutboxMessage.status == "dead", "dead"),
                         (OutboxMessage.attempts > 0, "retrying"), else_="pending")
            outbox = s.execute(select(OutboxMessage.action, state, func.count())
                               .where(OutboxMessage.status.in_(("pending", "dead")))
                               .group_by(OutboxMessage.action, state)).all()
            lanes = describe(s, now)
        yield GaugeMetricFamily("crm_journeys_inbox_backlog", "Inbox events waiting to be decided.",
                                value=pending)
        yield GaugeMetricFamily("crm_journeys_inbox_oldest_age_seconds",
                                "Age of the oldest inbox event waiting (0: none).",
                                value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        rows = GaugeMetricFamily("crm_journeys_outbox_rows", "Outbox rows by action and state "
                                 "(pending: not tried yet; retrying; dead: dead-lettered).",
                                 labels=["action", "state"])
        for action, st, count in outbox:
            rows.add_metric([action, st], count)
        yield rows
        yield from _lane_families(lanes, now)


def _lane_families(lanes: list[dict[str, object]], now: object) -> Iterator[GaugeMetricFamily]:
    from crm_journeys.connectors.http import DEFAULT_LIMITS

    parked = GaugeMetricFamily("crm_journeys_lane_parked", "1 while a delivery lane is parked "
                               "(its host is down or asked us to wait).", labels=["lane"])
    budget = GaugeMetricFamily("crm_journeys_lane_budget_left", "Deliveries left in a lane's "
                               "budget this minute.", labels=["lane"])
    for lane in lanes:
        parked.add_metric([str(lane["lane"])], 1 if lane["parked_until"] else 0)
        if lane["budget_left"] is not None:
            budget.add_metric([str(lane["lane"])], float(lane["budget_left"]))  # type: ignore[arg-type]
    yield parked
    yield budget
    yield GaugeMetricFamily("crm_journeys_open_circuits", "Open circuits: parked lanes, and host "
                            "accounts whose budget is spent in this process.",
                            value=sum(1 for lane in lanes if lane["parked_until"]) + DEFAULT_LIMITS.open_count())


class MetricsPage:
    """The text ``/metrics`` answers: this process's counters and the database's gauges."""

    def __init__(self, runtime: Runtime):
        self.registry = CollectorRegistry()
        self.registry.register(BacklogCollector(runtime))

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.registry)
