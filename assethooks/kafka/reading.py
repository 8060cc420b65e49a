"""Reading topics outside any consumer group: records by position and by range for the operator tools, and
one long-lived metadata reader for partitions, watermarks and offsets by time (the dead-letter size metric
asks it every few seconds; a command opens one for its look-ups)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from assethooks.errors import KafkaUnavailableError
from assethooks.kafka.config import check_reachable, describe, reader_config
from assethooks.kafka.protocols import Consumer, Record
from assethooks.kafka.records import is_partition_end
from assethooks.settings import Settings

Position = tuple[int, int]  # partition, offset
SEEK_GAP = 500  # reading forward beats seeking up to this many records
POLL_TIMEOUT = 10.0
METADATA_TIMEOUT = 10.0


def _reader(settings: Settings, role: str) -> Consumer:
    return confluent_kafka.Consumer(reader_config(settings, role))


class MetadataReader:
    """One client for partitions, watermarks and offsets by time, kept open between look-ups (it never
    joins a group). Look-ups raise ``KafkaUnavailableError`` when the cluster does not answer within
    ``timeout`` seconds."""

    def __init__(
        self, settings: Settings, role: str = "metadata", *, timeout: float = METADATA_TIMEOUT
    ) -> None:
        self._consumer = _reader(settings, role)
        self._timeout = timeout

    @classmethod
    def for_command(cls, settings: Settings, *, timeout: float = METADATA_TIMEOUT) -> Self:
        """A reader for one command: fails first, with the reason, when the cluster cannot be reached."""
        check_reachable(settings)
        return cls(settings, "operator", timeout=timeout)

    def partitions(self, topic: str) -> list[int]:
        """The partitions of ``topic`` (none when it does not exist)."""
        try:
            found = self._consumer.list_topics(topic, timeout=self._timeout).topics.get(topic)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot read the partitions of {topic}: {describe(exc)}") from None
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def watermarks(self, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Low and high watermark of each partition."""
        try:
            return {partition: self._high_and_low(topic, partition) for partition in partitions}
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot read the offsets of {topic}: {describe(exc)}") from None

    def _high_and_low(self, topic: str, partition: int) -> tuple[int, int]:
        return self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self._timeout)

    def size(self, topic: str) -> int:
        """How many records ``topic`` holds (between its watermarks, over all partitions)."""
        marks = self.watermarks(topic, self.partitions(topic))
        return sum(high - low for low, high in marks.values())

    def offsets_at(self, topic: str, partitions: Sequence[int], moment: datetime) -> dict[int, int]:
        """For each partition, the first offset whose timestamp is at or after ``moment`` (the end when
        none)."""
        millis = max(0, int(moment.timestamp() * 1000))  # Kafka reads negative times as special offsets
        try:
            found = self._consumer.offsets_for_times(
                [TopicPartition(topic, p, millis) for p in partitions], timeout=self._timeout
            )
            result = {}
            for position in found:
                offset = position.offset
                if offset < 0:  # no record that late: the end of the partition
                    offset = self._high_and_low(topic, position.partition)[1]
                result[position.partition] = offset
            return result
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot look up offsets of {topic}: {exc}") from None

    def close(self) -> None:
        """Release the client."""
        self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def read_at(settings: Settings, topic: str, positions: Iterable[Position]) -> dict[Position, Record]:
    """The records of ``topic`` at ``positions``; positions whose record is gone are left out."""
    wanted: dict[int, list[int]] = defaultdict(list)
    for partition, offset in positions:
        wanted[partition].append(offset)
    found: dict[Position, Record] = {}
    consumer = _reader(settings, "operator")
    try:
        for partition, offsets in sorted(wanted.items()):
            found.update(_read_partition(consumer, topic, partition, sorted(set(offsets))))
    finally:
        consumer.close()
    return found


def _read_partition(
    consumer: Consumer, topic: str, partition: int, offsets: list[int]
) -> dict[Position, Record]:
    found: dict[Position, Record] = {}
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


def _ended(record: Record) -> bool:
    error = record.error()
    if error is None:
        return False
    if is_partition_end(error):
        return True
    raise KafkaUnavailableError(f"cannot read {record.topic()}: {error.str()}")


def scan(
    settings: Settings, topic: str, start: Mapping[int, int], end: Mapping[int, int]
) -> Iterator[Record]:
    """Every record of ``topic`` from ``start[p]`` (inclusive; the beginning when ``start`` has no offset for
    ``p``) to ``end[p]`` (exclusive), per partition."""
    todo = {partition: stop for partition, stop in end.items() if start.get(partition, 0) < stop}
    if not todo:
        return
    consumer = _reader(settings, "operator")
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
