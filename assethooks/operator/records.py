"""Kafka reads and writes of the operator tools: records by position, partition ranges, offsets by time,
and a synchronous producer whose ``flush`` says whether everything sent was acknowledged."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin._config import ConfigResource

from assethooks.errors import KafkaUnavailableError
from assethooks.kafka import admin_client, check_reachable, client_config, producer_config
from assethooks.settings import Settings

Position = tuple[int, int]  # partition, offset
SEEK_GAP = 500  # reading forward beats seeking up to this many records
POLL_TIMEOUT = 10.0
PRODUCER_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes, which producer_config leaves as it is
RECORD_FRAMING = 36  # bytes librdkafka adds to key, value and headers when it checks a record's size
BATCH_FRAMING = 61  # bytes of a record batch's header, which the broker counts too


def _reader(settings: Settings) -> Consumer:
    return Consumer(
        {
            **client_config(settings, "operator"),
            "group.id": "assethooks-operator",  # never joins or commits: partitions are assigned by hand
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partitions of ``topic`` (none when it does not exist)."""
    admin = admin_client(settings)
    check_reachable(settings)
    found = admin.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        return []
    return sorted(found.partitions)


def record_limit(settings: Settings, topic: str) -> int:
    """The most bytes of key and value that one record of ``topic`` may hold: what the producer takes or
    what the topic (``max.message.bytes``) takes, whichever is less, before compression."""
    producer = int(producer_config(settings, "operator").get("message.max.bytes", PRODUCER_MAX_BYTES))
    limit = producer - RECORD_FRAMING
    check_reachable(settings)
    admin = admin_client(settings)  # kept until the answer is in: a dropped client fails its futures
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    try:
        entry = next(iter(described.values())).result(timeout=10).get("max.message.bytes")
    except KafkaException:  # no such topic (yet): the producer's limit is what is known
        return limit
    if entry is not None and entry.value:
        limit = min(limit, int(entry.value) - BATCH_FRAMING - RECORD_FRAMING)
    return limit


def read_at(settings: Settings, topic: str, positions: Iterable[Position]) -> dict[Position, Message]:
    """The records of ``topic`` at ``positions``; positions whose record is gone are left out."""
    wanted: dict[int, list[int]] = defaultdict(list)
    for partition, offset in positions:
        wanted[partition].append(offset)
    found: dict[Position, Message] = {}
    consumer = _reader(settings)
    try:
        for partition, offsets in sorted(wanted.items()):
            found.update(_read_partition(consumer, topic, partition, sorted(set(offsets))))
    finally:
        consumer.close()
    return found


def _read_partition(
    consumer: Consumer, topic: str, partition: int, offsets: list[int]
) -> dict[Position, Message]:
    found: dict[Position, Message] = {}
    consumer.assign([TopicPartition(topic, partition, offsets[0])])
    index = 0
    deadline = time.monotonic() + POLL_TIMEOUT  # moved on by every record of the partition
    while index < len(offsets):
        record = consumer.poll(POLL_TIMEOUT)
        if record is None or time.monotonic() > deadline:
            break
        if record.partition() != partition:
            continue  # also errors of no partition (a broker going away): retried within the deadline
        deadline = time.monotonic() + POLL_TIMEOUT
        if _ended(record):
            break
        offset = record.offset() or 0
        while index < len(offsets) and offsets[index] < offset:
            index += 1  # gone: compacted or past retention
        if index < len(offsets) and offsets[index] == offset:
            found[(partition, offset)] = record
            index += 1
        if index < len(offsets) and offsets[index] - offset > SEEK_GAP:
            consumer.seek(TopicPartition(topic, partition, offsets[index]))
    return found


def _ended(record: Message) -> bool:
    error = record.error()
    if error is None:
        return False
    if error.code() == KafkaError._PARTITION_EOF:
        return True
    raise KafkaUnavailableError(f"cannot read {record.topic()}: {error.str()}")


def scan(
    settings: Settings, topic: str, start: Mapping[int, int], end: Mapping[int, int]
) -> Iterator[Message]:
    """Every record of ``topic`` from ``start[p]`` (inclusive) to ``end[p]`` (exclusive), per partition."""
    todo = {partition: stop for partition, stop in end.items() if start.get(partition, 0) < stop}
    if not todo:
        return
    consumer = _reader(settings)
    try:
        consumer.assign(
            [TopicPartition(topic, partition, start.get(partition, OFFSET_BEGINNING)) for partition in todo]
        )
        deadline = time.monotonic() + POLL_TIMEOUT  # moved on by every record or end of a partition
        while todo:
            record = consumer.poll(POLL_TIMEOUT)
            if record is None or time.monotonic() > deadline:
                raise KafkaUnavailableError(f"no records from {topic} within {POLL_TIMEOUT:g}s")
            partition = record.partition()
            if partition not in todo:
                continue  # also errors of no partition (a broker going away): retried within the deadline
            deadline = time.monotonic() + POLL_TIMEOUT
            if _ended(record):
                del todo[partition]
                continue
            offset = record.offset() or 0
            if offset >= todo[partition]:
                del todo[partition]
                consumer.pause([TopicPartition(topic, partition)])
                continue
            yield record
            if offset + 1 >= todo[partition]:
                del todo[partition]
                consumer.pause([TopicPartition(topic, partition)])
    finally:
        consumer.close()


def watermarks(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Low and high watermark of each partition."""
    consumer = _reader(settings)
    try:
        return {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            for partition in partitions
        }
    finally:
        consumer.close()


def offsets_at(settings: Settings, topic: str, partitions: Sequence[int], moment: datetime) -> dict[int, int]:
    """For each partition, the first offset whose timestamp is at or after ``moment`` (the end when none)."""
    consumer = _reader(settings)
    try:
        millis = max(0, int(moment.timestamp() * 1000))  # Kafka reads negative times as special offsets
        found = consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout=10)
        result = {}
        for position in found:
            offset = position.offset
            if offset < 0:  # no record that late: the end of the partition
                offset = consumer.get_watermark_offsets(
                    TopicPartition(topic, position.partition), timeout=10
                )[1]
            result[position.partition] = offset
        return result
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot look up offsets of {topic}: {exc}") from None
    finally:
        consumer.close()


class RecordWriter:
    """An idempotent producer for operator commands; ``flush`` raises unless every record was acknowledged."""

    def __init__(self, settings: Settings) -> None:
        check_reachable(settings)
        self._producer = Producer({**producer_config(settings, "operator"), "message.timeout.ms": 30000})
        self._failures: list[str] = []

    def send(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Queue one record."""
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=self._report
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _report(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._failures.append(error.str())

    def flush(self) -> None:
        """Wait for every queued record; raise ``KafkaUnavailableError`` if any was not acknowledged."""
        left = self._producer.flush(30)
        if left or self._failures:
            reason = self._failures[0] if self._failures else f"{left} records not acknowledged within 30s"
            self._failures.clear()
            raise KafkaUnavailableError(f"Kafka did not take every record: {reason}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.flush()
