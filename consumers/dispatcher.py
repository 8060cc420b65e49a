"""The dispatcher: reads ``asset-events`` and makes the first attempt of every (event, webhook) delivery.

Invalid records go to the dead-letter topic with their reason. Deliveries of one asset to one webhook
start their first attempt in the order of the events (see ``consumers.lanes``); everything else runs
concurrently. A record read again after a crash, a restart or a rebalance sends only the deliveries the log
holds no attempt of (``consumers.ledger``).

A webhook with a payload filter gets only the events its filter accepts; a rejected event is no delivery
(no attempt, no log row), only a count in ``assethooks_filtered_total``. The body is parsed as JSON only
for events that a webhook with a filter subscribes to, once for all of them.
"""

from __future__ import annotations

from assethooks.completion import Countdown, Done, follow
from assethooks.errors import InvalidEventError
from assethooks.kafka import Record, record_key, source_of
from consumers.ledger import DeliveryLedger, RereadGate
from consumers.pipeline import Delivery, DeliveryPipeline
from consumers.subscriptions import SubscriptionCache, accepted
from schemas.events import parse_event
from schemas.tasks import DeadLetterKind, delivery_id_for


class Dispatcher:
    """Turns each source record into its deliveries (a ``consumers.runtime.Handler``)."""

    def __init__(
        self, pipeline: DeliveryPipeline, subscriptions: SubscriptionCache, ledger: DeliveryLedger
    ) -> None:
        self._pipeline = pipeline
        self._subscriptions = subscriptions
        self._gate = RereadGate(ledger, pipeline.submit)

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Records read again on these partitions are checked against the delivery log first."""
        self._gate.assigned(partitions)

    def schedule(self, record: Record, done: Done) -> None:
        """Start the work for one source record: its deliveries, or its dead letter."""
        source = source_of(record)
        body = record.value()
        try:
            event = parse_event(body)
        except InvalidEventError as exc:
            dead = self._pipeline.dead_letter(
                DeadLetterKind.INVALID_EVENT, str(exc), source=source, body=body, key=record_key(record)
            )
            follow(dead, done)
            return
        assert body is not None
        name = event.event.value
        webhooks, filters = self._subscriptions.route(name)
        if filters is not None:  # only events a webhook with a filter subscribes to pay for it
            webhooks = accepted(webhooks, filters, body)
        if not webhooks:
            done(None)
            return
        key = record_key(record) or event.asset_key
        finished = done if len(webhooks) == 1 else Countdown(len(webhooks), done)
        deliveries = [
            Delivery(webhook, body, name, key, delivery_id_for(source, webhook.id), 1, source, finished)
            for webhook in webhooks
        ]
        self._gate.take(source.topic, source.partition, source.offset, deliveries)
