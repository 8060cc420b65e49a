"""What the service needs of a Kafka record, a consumer and a producer, as ``Protocol``s.

They are for typing only: the objects passed around are confluent-kafka's own (a ``Message`` goes from the
consumer to the handlers as it is, without a wrapper on the hot path), but code outside ``assethooks.kafka``
names these instead of confluent-kafka's classes, and a test can hand in anything shaped like them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from confluent_kafka import KafkaError, TopicPartition

from schemas.tasks import RecordHeaders

Headers = Sequence[tuple[str, bytes]]  # the headers of a record to produce
Rebalance = Callable[[Any, list[TopicPartition]], None]  # (the consumer, the partitions)
DeliveryReport = Callable[[KafkaError | None, Any], None]  # (the error or None, the record)


class Record(Protocol):
    """A consumed record (or an error in its place, when ``error()`` is not ``None``)."""

    def topic(self) -> str | None:
        """The topic it was read from."""
        ...

    def partition(self) -> int | None:
        """Its partition."""
        ...

    def offset(self) -> int | None:
        """Its offset in the partition."""
        ...

    def key(self) -> bytes | None:
        """Its key."""
        ...

    def value(self) -> bytes | None:
        """Its value."""
        ...

    def headers(self) -> RecordHeaders:
        """Its headers, in order (a name may repeat)."""
        ...

    def timestamp(self) -> tuple[int, int]:
        """(timestamp type, unix milliseconds); the type is 0 when the record has no timestamp."""
        ...

    def error(self) -> KafkaError | None:
        """What went wrong instead of a record (an end of partition, a broker error), or ``None``."""
        ...


class GroupMember(Protocol):
    """What the consumer runtime calls on a consumer that joined a group."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: Rebalance | None = ...,
        on_revoke: Rebalance | None = ...,
        on_lost: Rebalance | None = ...,
    ) -> None:
        """Join the group on ``topics``; the callbacks run inside ``poll``."""
        ...

    def poll(self, timeout: float = ...) -> Record | None:
        """The next record, waiting up to ``timeout`` seconds."""
        ...

    def consume(self, num_messages: int = ..., timeout: float = ...) -> Sequence[Record]:
        """Up to ``num_messages`` records, waiting up to ``timeout`` seconds."""
        ...

    def assignment(self) -> list[TopicPartition]:
        """The partitions assigned now."""
        ...

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Stop fetching these partitions."""
        ...

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch these partitions again."""
        ...

    def seek(self, partition: TopicPartition) -> None:
        """Read the partition from the given offset next."""
        ...

    def store_offsets(self, *, offsets: list[TopicPartition]) -> None:
        """Mark these offsets for the next commit."""
        ...

    def commit(self, *, asynchronous: Literal[False]) -> list[TopicPartition]:
        """Commit the stored offsets now."""
        ...

    def close(self) -> None:
        """Leave the group (committing stored offsets) and release the client."""
        ...


class Consumer(GroupMember, Protocol):
    """A consumer as the operator reads use it too: partitions assigned by hand, watermarks, metadata."""

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read these partitions from their given offsets, outside any group."""
        ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]:
        """Low and high watermark of the partition."""
        ...

    def offsets_for_times(
        self, partitions: list[TopicPartition], timeout: float = ...
    ) -> list[TopicPartition]:
        """For each partition (its offset a unix time in ms), the first offset at or after that time."""
        ...

    def list_topics(self, topic: str | None = ..., timeout: float = ...) -> Any:
        """The cluster's metadata (of ``topic`` only, when given)."""
        ...


class Producer(Protocol):
    """What ``RecordProducer`` calls on a librdkafka producer."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        on_delivery: DeliveryReport | None = ...,
        headers: list[tuple[str, str | bytes | None]] | None = ...,
    ) -> None:
        """Queue one record (``BufferError`` when the local queue is full)."""
        ...

    def poll(self, timeout: float = ...) -> int:
        """Serve delivery reports, waiting up to ``timeout`` seconds for one."""
        ...

    def flush(self, timeout: float = ...) -> int:
        """Wait up to ``timeout`` seconds for every queued record; return how many are left."""
        ...
