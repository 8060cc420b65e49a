"""``RecordProducer`` against a fake librdkafka producer (the ``Producer`` protocol): waiting while the queue
is full, delivery reports in the caller's thread or on the event loop, and how refusals are reported."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError

from assethooks.errors import KafkaUnavailableError, RecordTooLargeError
from assethooks.kafka import RecordProducer
from assethooks.kafka.protocols import DeliveryReport


class FakeProducer:
    """Queues records; ``poll`` and ``flush`` report them with the next of ``outcomes`` (``None``: taken)."""

    def __init__(self, *outcomes: KafkaError | None, full: int = 0) -> None:
        self.outcomes = list(outcomes)
        self.full = full  # how many produce calls find the queue full
        self.queued: list[tuple[str, bytes | None, DeliveryReport | None]] = []
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.polls = 0

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryReport | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.queued.append((topic, value, on_delivery))
        self.sent.append((topic, value, key, headers))

    def poll(self, timeout: float = -1) -> int:
        self.polls += 1
        return self._report()

    def flush(self, timeout: float = -1) -> int:
        self._report()
        return len(self.queued)

    def _report(self) -> int:
        served = 0
        while self.queued and self.outcomes:
            _topic, _value, report = self.queued.pop(0)
            outcome = self.outcomes.pop(0)
            if report is not None:
                report(outcome, None)
            served += 1
        return served


def test_send_waits_while_the_queue_is_full_and_reports_in_the_callers_thread() -> None:
    fake = FakeProducer(None, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), full=2)
    producer = RecordProducer({}, client=fake)
    heard: list[BaseException | None] = []
    producer.send("t", b"one", key=b"k", headers=[("h", b"v")], then=heard.append)
    producer.send("t", b"two", key=None, then=heard.append)
    assert fake.sent == [("t", b"one", b"k", [("h", b"v")]), ("t", b"two", None, [])]
    assert fake.polls >= 3  # twice while full, then after each record
    assert producer.flush() == 0
    assert heard[0] is None
    assert isinstance(heard[1], RecordTooLargeError)


def test_acknowledge_raises_with_the_first_refusal() -> None:
    fake = FakeProducer(None, KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"))
    producer = RecordProducer({}, client=fake)
    producer.send("t", b"one", key=None)
    producer.send("t", b"two", key=None)
    with pytest.raises(KafkaUnavailableError, match="Kafka did not take every record: timed out"):
        producer.acknowledge()
    producer.acknowledge()  # the refusal was reported once


def test_acknowledge_raises_when_records_are_left() -> None:
    producer = RecordProducer({}, client=FakeProducer())
    producer.send("t", b"one", key=None)
    with pytest.raises(KafkaUnavailableError, match="1 records not acknowledged within 2s"):
        producer.acknowledge(2)


def test_on_the_loop_produce_says_when_the_queue_is_full_and_deliver_waits_for_the_broker() -> None:
    async def scenario() -> None:
        fake = FakeProducer(None, KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"), full=1)
        producer = RecordProducer({}, client=fake)
        producer.start()
        heard: list[BaseException | None] = []
        assert not producer.produce("t", b"x", key=None, headers=(), then=heard.append)
        assert producer.produce("t", b"x", key=None, headers=(), then=heard.append)
        with pytest.raises(KafkaUnavailableError, match="timed out"):
            await producer.deliver("t", b"y", key=None)
        assert heard == [None]
        assert await producer.close(1) == 0

    asyncio.run(scenario())
