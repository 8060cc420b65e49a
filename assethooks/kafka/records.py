"""Reading a consumed record: its position, its key, and what its error means. Shared by the consumer groups
and the operator tools; the dispatcher calls some of these for every record (plain functions, no objects)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from assethooks.kafka.protocols import Record
from schemas.tasks import SourceRef


def coordinates(record: Record) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed record (always set on records without an error)."""
    topic, partition, offset = record.topic(), record.partition(), record.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("record without topic, partition or offset")
    return topic, partition, offset


def source_of(record: Record) -> SourceRef:
    """Where ``record`` was read, with its timestamp when it has one."""
    kind, timestamp = record.timestamp()
    topic, partition, offset = coordinates(record)
    return SourceRef(topic, partition, offset, timestamp if kind else None)


def written_at(record: Record) -> float | None:
    """When ``record`` was written (unix seconds), when it says."""
    kind, timestamp = record.timestamp()
    return timestamp / 1000 if kind else None


def record_key(record: Record) -> str | None:
    """The record's key as text (asset ids are text keys), or ``None``."""
    key = record.key()
    if key is None:
        return None
    return key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)


def raw_key(record: Record) -> bytes | None:
    """The record's key as bytes, to produce it again unchanged."""
    key = record.key()
    return key if isinstance(key, bytes) else None


def is_partition_end(error: KafkaError) -> bool:
    """True for the "end of partition" event (``enable.partition.eof``): not a problem."""
    return error.code() == KafkaError._PARTITION_EOF
