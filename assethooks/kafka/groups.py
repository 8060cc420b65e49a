"""Consumer groups: the consumer of a group member, and a group seen from outside (its running members, and
moving a stopped group's offsets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import confluent_kafka
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from assethooks.errors import KafkaUnavailableError
from assethooks.kafka.config import admin_client, check_reachable
from assethooks.kafka.protocols import GroupMember
from assethooks.settings import Settings

GROUP_TIMEOUT = 10.0


def group_consumer(config: dict[str, Any]) -> GroupMember:
    """A consumer that joins the group of ``config`` (see ``consumer_config``) once it subscribes."""
    return confluent_kafka.Consumer(config)


def nothing_to_commit(exc: KafkaException) -> bool:
    """True when a commit failed only because no offset was stored since the last one."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET


def running_members(settings: Settings, group: str) -> int:
    """How many members of ``group`` are running now."""
    check_reachable(settings)
    admin = admin_client(settings)
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=GROUP_TIMEOUT)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot describe group {group}: {exc}") from None
    return len(described.members)


def move_group(settings: Settings, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Set the committed offsets of ``group`` on ``topic`` (partition → offset); no member may be running."""
    admin = admin_client(settings)
    positions = [TopicPartition(topic, partition, offset) for partition, offset in sorted(offsets.items())]
    try:
        done = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, positions)])
        done[group].result(timeout=GROUP_TIMEOUT)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot move group {group}: {exc}") from None
