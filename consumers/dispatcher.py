"""The dispatcher: reads ``asset-events`` and makes the first attempt of every (event, webhook) delivery.

Invalid records go to the dead-letter topic with their reason. Deliveries of one asset to one webhook
start their first attempt in the order of the events; everything else runs concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from confluent_kafka import Message

from assethooks.errors import InvalidEventError
from consumers.pipeline import Delivery, DeliveryPipeline
from consumers.runtime import coordinates
from consumers.subscriptions import SubscriptionCache
from schemas.events import parse_event
from schemas.tasks import DeadLetterKind, SourceRef, delivery_id_for

ChainKey = tuple[int, str]


def source_of(record: Message) -> SourceRef:
    """Where ``record`` was read."""
    kind, timestamp = record.timestamp()
    topic, partition, offset = coordinates(record)
    return SourceRef(
        topic=topic, partition=partition, offset=offset, timestamp_ms=timestamp if kind else None
    )


def record_key(record: Message) -> str | None:
    """The record's key as text (asset ids are text keys), or ``None``."""
    key = record.key()
    if key is None:
        return None
    return key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)


class Dispatcher:
    """Turns each source record into its deliveries (a ``consumers.runtime.Handler``)."""

    def __init__(self, pipeline: DeliveryPipeline, subscriptions: SubscriptionCache) -> None:
        self._pipeline = pipeline
        self._subscriptions = subscriptions
        # The first attempt of the newest delivery per (webhook, asset): the next one waits for it.
        self._chains: dict[ChainKey, asyncio.Future[None]] = {}

    def schedule(self, record: Message) -> Awaitable[None]:
        """The work for one source record."""
        source = source_of(record)
        body = record.value()
        try:
            event = parse_event(body)
        except InvalidEventError as exc:
            return self._pipeline.dead_letter(
                DeadLetterKind.INVALID_EVENT, str(exc), source=source, body=body, key=record_key(record)
            )
        assert body is not None
        key = record_key(record) or event.asset_key
        deliveries = [
            Delivery(
                webhook=webhook,
                body=body,
                event=event.event.value,
                asset_key=key,
                delivery_id=delivery_id_for(source, webhook.id),
                attempt=1,
                source=source,
            )
            for webhook in self._subscriptions.matching(event.event.value)
        ]
        return self._all([self._in_order(delivery) for delivery in deliveries])

    @staticmethod
    async def _all(work: list[Awaitable[None]]) -> None:
        await asyncio.gather(*work)

    def _in_order(self, delivery: Delivery) -> Awaitable[None]:
        # Joining the chain happens now, in record order; the waiting happens in the coroutine.
        chain_key = (delivery.webhook.id, delivery.asset_key or "")
        previous = self._chains.get(chain_key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chains[chain_key] = mine
        return self._deliver(delivery, chain_key, previous, mine)

    async def _deliver(
        self,
        delivery: Delivery,
        chain_key: ChainKey,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        try:
            if previous is not None:
                await previous
            result = await self._pipeline.send(delivery)
        finally:
            mine.set_result(None)
            if self._chains.get(chain_key) is mine:
                del self._chains[chain_key]
        await self._pipeline.settle(delivery, result)
