"""The Kafka seam: the only package that imports ``confluent_kafka`` (``tests/test_layering.py`` holds every
other module to that).

- ``config``: librdkafka configurations built from the settings, the admin client, the reachability check;
- ``topics``: the service's topics (``ensure_topics``) and the size one record may have;
- ``protocols``: what the service needs of a record, a consumer and a producer (typing only: the objects
  passed are confluent-kafka's own, so the hot path has no wrapper);
- ``records``: reading a consumed record (its position, its key, its source for a delivery);
- ``groups``: a group member's consumer, and a group seen from outside (its state, members and committed
  offsets; rewinding it);
- ``producer``: ``RecordProducer``, the one producer wrapper, for commands and for the event loop;
- ``reading``: reads outside any group: records by position or range, and ``MetadataReader`` for
  partitions, watermarks and offsets by time.

``KafkaException`` (what librdkafka's calls raise) and ``TopicPartition`` (a partition, with an offset) are
confluent-kafka's, handed on as they are.
"""

from confluent_kafka import KafkaException, TopicPartition

from assethooks.kafka.config import (
    FETCH_QUEUE_BACKOFF_MS,
    LIBRDKAFKA_LOGGER,
    admin_client,
    check_reachable,
    client_config,
    consumer_config,
    producer_config,
)
from assethooks.kafka.groups import (
    GroupView,
    Member,
    group_consumer,
    move_group,
    nothing_to_commit,
    running_members,
    view_groups,
)
from assethooks.kafka.producer import RecordProducer
from assethooks.kafka.protocols import Consumer, GroupMember, Headers, Producer, Record
from assethooks.kafka.reading import MetadataReader, read_at, scan
from assethooks.kafka.records import (
    coordinates,
    is_partition_end,
    raw_key,
    record_key,
    source_of,
    written_at,
)
from assethooks.kafka.topics import TopicResult, TopicSpec, ensure_topics, record_limit, topic_specs

__all__ = [
    "FETCH_QUEUE_BACKOFF_MS",
    "LIBRDKAFKA_LOGGER",
    "Consumer",
    "GroupMember",
    "GroupView",
    "Headers",
    "KafkaException",
    "Member",
    "MetadataReader",
    "Producer",
    "Record",
    "RecordProducer",
    "TopicPartition",
    "TopicResult",
    "TopicSpec",
    "admin_client",
    "check_reachable",
    "client_config",
    "consumer_config",
    "coordinates",
    "ensure_topics",
    "group_consumer",
    "is_partition_end",
    "move_group",
    "nothing_to_commit",
    "producer_config",
    "raw_key",
    "read_at",
    "record_key",
    "record_limit",
    "running_members",
    "scan",
    "source_of",
    "topic_specs",
    "view_groups",
    "written_at",
]
