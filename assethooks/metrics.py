"""Prometheus metrics of the long-running processes, served on ``--metrics-port`` at ``/metrics``.

- ``assethooks_deliveries_total{outcome}``: attempts ``delivered`` or ``failed``, and deliveries
  ``postponed`` (moved to a retry tier unattempted because their webhook was congested);
- ``assethooks_attempt_duration_seconds``: how long attempts took;
- ``assethooks_in_flight_records{group}``: records taken in and not finished, per consumer group;
- ``assethooks_consumer_lag{group,topic,partition}``: records behind the end of each assigned partition;
- ``assethooks_retry_backlog{topic}``: tasks waiting in each retry tier (the retrier group's lag);
- ``assethooks_handoffs_total{topic}``: deliveries handed to a retry tier;
- ``assethooks_redeliveries_skipped_total``: deliveries of records read again that the log holds an attempt
  of, not sent again (retry tasks of deliveries already made included);
- ``assethooks_filtered_total{webhook}``: events a webhook's payload filter rejected (not deliveries: no
  attempt, no log row), per webhook id;
- ``assethooks_dead_letters_total{kind}``: records this process put on the dead-letter topic;
- ``assethooks_dead_letter_records``: records the dead-letter topic holds (from its offsets);
- ``assethooks_webhooks_disabled_total``: webhooks switched off (410 Gone, or failing too long);
- ``assethooks_circuits_opened_total``, ``assethooks_open_circuits``: circuit breakers;
- ``assethooks_webhook_concurrency{webhook}``: attempts a webhook may have running at once in this process
  (its adaptive concurrency limit).
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from itertools import accumulate
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
DELIVERIES = Counter("assethooks_deliveries", "Delivery attempts by outcome", ["outcome"], registry=REGISTRY)
DELIVERED = DELIVERIES.labels("delivered")
FAILED = DELIVERIES.labels("failed")
POSTPONED = DELIVERIES.labels("postponed")


class LoopHistogram(Collector):
    """A histogram for the event loop's hot path: one ``bisect`` and two additions per observation, no
    lock (observed and collected on the same thread: the loop, which also serves ``/metrics``)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram in Prometheus' form: cumulative counts per upper bound."""
        cumulative = list(accumulate(self._counts))
        bounds = [*(str(float(bound)) for bound in self._bounds), "+Inf"]
        yield HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=self._sum,
        )


ATTEMPT_SECONDS = LoopHistogram(
    "assethooks_attempt_duration_seconds",
    "How long delivery attempts took",
    (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REGISTRY.register(ATTEMPT_SECONDS)
IN_FLIGHT = Gauge("assethooks_in_flight_records", "Records in progress", ["group"], registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "assethooks_consumer_lag",
    "Records behind the partition end",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
RETRY_BACKLOG = Gauge(
    "assethooks_retry_backlog", "Tasks waiting in a retry tier", ["topic"], registry=REGISTRY
)
HANDOFFS = Counter("assethooks_handoffs", "Deliveries handed to a retry tier", ["topic"], registry=REGISTRY)
_HANDOFFS_BY_TOPIC: dict[str, Any] = {}


def handed_off(topic: str) -> None:
    """Count a delivery handed to the retry tier ``topic`` (the labelled child kept: a hot path)."""
    child = _HANDOFFS_BY_TOPIC.get(topic)
    if child is None:
        child = _HANDOFFS_BY_TOPIC[topic] = HANDOFFS.labels(topic)
    child.inc()


REDELIVERIES_SKIPPED = Counter(
    "assethooks_redeliveries_skipped",
    "Deliveries of records read again (after a crash, a restart or a rebalance) not sent again: the log "
    "holds their attempt",
    registry=REGISTRY,
)
FILTERED = Counter(
    "assethooks_filtered", "Events a webhook's payload filter rejected", ["webhook"], registry=REGISTRY
)
_FILTERED_BY_WEBHOOK: dict[int, Any] = {}


def filtered_out(webhook_id: int) -> None:
    """Count an event the filter of webhook ``webhook_id`` rejected (the labelled child kept)."""
    child = _FILTERED_BY_WEBHOOK.get(webhook_id)
    if child is None:
        child = _FILTERED_BY_WEBHOOK[webhook_id] = FILTERED.labels(str(webhook_id))
    child.inc()


DEAD_LETTERS = Counter(
    "assethooks_dead_letters", "Records put on the dead-letter topic", ["kind"], registry=REGISTRY
)
DEAD_LETTER_RECORDS = Gauge(
    "assethooks_dead_letter_records", "Records in the dead-letter topic", registry=REGISTRY
)
WEBHOOKS_DISABLED = Counter(
    "assethooks_webhooks_disabled", "Webhooks switched off (410 Gone, or failing too long)", registry=REGISTRY
)
CIRCUITS_OPENED = Counter("assethooks_circuits_opened", "Circuit breakers opened", registry=REGISTRY)
OPEN_CIRCUITS = Gauge("assethooks_open_circuits", "Webhooks whose circuit is open now", registry=REGISTRY)
WEBHOOK_CONCURRENCY = Gauge(
    "assethooks_webhook_concurrency",
    "Attempts a webhook may have running at once in this process (adaptive)",
    ["webhook"],
    registry=REGISTRY,
)


def record_consumer_stats(group: str, retry_topics: frozenset[str]) -> Callable[[str], None]:
    """A librdkafka ``stats_cb`` that publishes consumer lag (and retry backlog for retry tiers)."""

    def publish(raw: str) -> None:
        try:
            stats: dict[str, Any] = json.loads(raw)
            for topic, details in stats.get("topics", {}).items():
                backlog = 0
                for partition, values in details.get("partitions", {}).items():
                    lag = values.get("consumer_lag", -1)
                    if partition == "-1" or lag < 0:
                        continue
                    CONSUMER_LAG.labels(group, topic, partition).set(lag)
                    backlog += lag
                if topic in retry_topics:
                    RETRY_BACKLOG.labels(topic).set(backlog)
        except (ValueError, AttributeError, TypeError) as exc:  # never let a stats format change hurt
            log.debug("unreadable consumer statistics: %s", exc)

    return publish


async def _this_process() -> bytes:
    return generate_latest(REGISTRY)


async def serve_metrics(
    host: str, port: int, *, render: Callable[[], Awaitable[bytes]] = _this_process
) -> web.AppRunner:
    """Start the ``/metrics`` endpoint (this process's metrics, or what ``render`` gives); the caller
    cleans the runner up."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=await render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
