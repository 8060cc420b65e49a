"""The topics of the service: which exist, creating the missing ones, and how large one record may be."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from assethooks.errors import KafkaUnavailableError
from assethooks.kafka.config import admin_client, check_reachable, describe, producer_config
from assethooks.settings import Settings

PRODUCER_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes, which producer_config leaves as it is
RECORD_FRAMING = 36  # bytes librdkafka adds to key, value and headers when it checks a record's size
BATCH_FRAMING = 61  # bytes of a record batch's header, which the broker counts too


@dataclass(frozen=True)
class TopicSpec:
    """A topic the service needs: name, partitions and retention."""

    name: str
    partitions: int
    retention_seconds: float
    purpose: str


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The source topic, one topic per retry tier, and the dead-letter topic."""
    specs = [TopicSpec(settings.source_topic, settings.partitions, settings.topic_retention, "source")]
    for delay in sorted(set(settings.retry_schedule)):
        # A task must outlive its own delay many times over, or a retrier outage would lose it.
        retention = max(settings.topic_retention, delay * 10)
        specs.append(TopicSpec(settings.retry_topic_for(delay), settings.partitions, retention, "retry tier"))
    specs.append(TopicSpec(settings.dlq_topic, settings.partitions, settings.dlq_retention, "dead letters"))
    return specs


@dataclass(frozen=True)
class TopicResult:
    """What ``ensure_topics`` did with one topic."""

    spec: TopicSpec
    created: bool
    partitions: int


def ensure_topics(settings: Settings, timeout: float = 8.0) -> list[TopicResult]:
    """Create the service's topics that do not exist yet; leave existing ones as they are."""
    check_reachable(settings)
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    specs = topic_specs(settings)
    missing = [spec for spec in specs if spec.name not in existing]
    created: set[str] = set()
    if missing:
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                config={"retention.ms": str(int(spec.retention_seconds * 1000))},
            )
            for spec in missing
        ]
        for name, future in admin.create_topics(new_topics, request_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
                created.add(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent `ensure`
                    raise KafkaUnavailableError(f"cannot create topic {name}: {describe(exc)}") from None
    described = admin.list_topics(timeout=timeout).topics
    return [
        TopicResult(
            spec,
            spec.name in created,
            len(described[spec.name].partitions) if spec.name in described else spec.partitions,
        )
        for spec in specs
    ]


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
