"""Consumer groups: the consumer of a group member, and a group seen from outside (its state, running members
and committed offsets, and moving a stopped group's offsets)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import confluent_kafka
import confluent_kafka.admin
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from assethooks.errors import KafkaUnavailableError
from assethooks.kafka.config import admin_client, check_reachable, describe
from assethooks.kafka.protocols import GroupMember
from assethooks.settings import Settings

GROUP_TIMEOUT = 10.0
LOOK_TIMEOUT = 5.0  # a look at groups (``view_groups``) gives up after this many seconds

# Kafka's own names of the group states (as ``kafka-consumer-groups.sh`` prints them).
STATE_NAMES = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
}


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


@dataclass(frozen=True)
class Member:
    """One running member of a group, as the group's coordinator sees it."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]  # (topic, partition), sorted


@dataclass(frozen=True)
class GroupView:
    """A consumer group seen from outside. ``state`` is Kafka's name for it: ``Stable``, ``Empty`` (no
    member, offsets kept), ``Dead`` (no member and no offsets: never used, or expired), or a rebalance.
    ``committed`` holds the partitions asked about that have a committed offset."""

    group: str
    state: str
    members: tuple[Member, ...]
    committed: Mapping[tuple[str, int], int]


RETRY_PAUSE = 0.25  # seconds between two looks at the groups


def view_groups(
    settings: Settings, partitions: Mapping[str, Sequence[tuple[str, int]]], timeout: float = LOOK_TIMEOUT
) -> dict[str, GroupView]:
    """For each group of ``partitions`` (group → its (topic, partition) pairs): its state, its members and
    its committed offsets on those partitions. Raises ``KafkaUnavailableError`` when the cluster does not
    answer within ``timeout`` seconds."""
    if not partitions:
        return {}
    check_reachable(settings, timeout)
    admin = admin_client(settings)  # kept until the answers are in: a dropped client fails its futures
    deadline = time.monotonic() + timeout
    while True:  # a broker just started may refuse a while (its group coordinator still loading)
        try:
            return _look(admin, partitions, max(deadline - time.monotonic(), RETRY_PAUSE))
        except KafkaUnavailableError:
            if time.monotonic() + RETRY_PAUSE >= deadline:
                raise
            time.sleep(RETRY_PAUSE)


def _look(
    admin: confluent_kafka.admin.AdminClient,
    partitions: Mapping[str, Sequence[tuple[str, int]]],
    timeout: float,
) -> dict[str, GroupView]:
    described = admin.describe_consumer_groups(list(partitions), request_timeout=timeout)
    # One group per request: the admin API lists the offsets of a single group at a time.
    offsets = {
        group: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for topic, p in wanted])],
            request_timeout=timeout,
        )[group]
        for group, wanted in partitions.items()
        if wanted  # none asked for: no request, which would list every partition the group committed
    }
    return {
        group: _view(
            group,
            _answer(described[group], f"describe group {group}", timeout),
            _committed(group, offsets.get(group), timeout),
        )
        for group in partitions
    }


def _answer(future: Future[Any], what: str, timeout: float) -> Any:
    try:
        return future.result(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot {what}: {describe(exc)}") from None
    except TimeoutError:
        raise KafkaUnavailableError(f"cannot {what}: no answer within {timeout:g}s") from None


def _view(group: str, described: Any, committed: Mapping[tuple[str, int], int]) -> GroupView:
    members = tuple(
        Member(
            member.member_id,
            member.client_id,
            member.host.removeprefix("/"),  # the broker writes the address as "/127.0.0.1"
            tuple(sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions)),
        )
        for member in described.members
    )
    return GroupView(group, STATE_NAMES.get(described.state, "Unknown"), members, committed)


def _committed(group: str, future: Future[Any] | None, timeout: float) -> dict[tuple[str, int], int]:
    if future is None:
        return {}
    listed = _answer(future, f"list the offsets of group {group}", timeout)
    found = {}
    for position in listed.topic_partitions:
        if position.error is not None:
            raise KafkaUnavailableError(
                f"cannot list the offsets of group {group} on {position.topic} [{position.partition}]: "
                f"{position.error.str()}"
            )
        if position.offset >= 0:  # negative: nothing committed there
            found[(position.topic, position.partition)] = position.offset
    return found
