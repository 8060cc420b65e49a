"""Handing deliveries on: to a retry tier for a later attempt, or to the dead-letter topic.

Both keep the event's exact bytes as the record value and the asset id as the key; the metadata travels
as JSON in one header (see ``schemas.tasks``).
"""

from __future__ import annotations

from assethooks.completion import Done, follow
from assethooks.kafka import RecordProducer
from schemas.tasks import DeadLetter, DeliveryTask, dead_letter_headers, key_bytes, task_headers


class Handoff:
    """Writes retry tasks and dead letters, each acknowledged by the broker before returning."""

    def __init__(self, producer: RecordProducer, dlq_topic: str) -> None:
        self._producer = producer
        self._dlq_topic = dlq_topic

    async def to_retry(self, topic: str, task: DeliveryTask, body: bytes) -> None:
        """Put ``task`` on the retry tier ``topic``."""
        await self._producer.deliver(topic, body, key=key_bytes(task.asset_key), headers=task_headers(task))

    def to_retry_then(self, topic: str, task: DeliveryTask, body: bytes, then: Done) -> None:
        """Put ``task`` on the retry tier ``topic``; ``then`` is called with ``None`` once the broker has it,
        or with the error. Without a future while librdkafka's queue has room (the hot path of moving a
        congested webhook's deliveries aside)."""
        key, headers = key_bytes(task.asset_key), task_headers(task)
        if not self._producer.produce(topic, body, key=key, headers=headers, then=then):
            follow(self._producer.deliver(topic, body, key=key, headers=headers), then)

    async def to_dead_letters(self, letter: DeadLetter, body: bytes | None, key: bytes | None) -> None:
        """Put a record on the dead-letter topic with why it is there."""
        await self._producer.deliver(self._dlq_topic, body, key=key, headers=dead_letter_headers(letter))
