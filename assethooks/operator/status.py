"""Whether the service keeps up, in one look (``assethooks status``, ``GET /api/status``): the consumer groups
with their state, members and lag per partition, the retry-tier backlog, the pending dead letters and the
last alerts run.

Lag is what a group still has to read of a partition: from its committed offset to the partition's end
(high watermark). Where the group committed nothing, or its offset is older than the oldest record kept,
it reads from the partition's start (low watermark, ``auto.offset.reset=earliest``), so everything there
is waiting. The committed offsets are read first, then the ends, not at one instant: a group that moves
meanwhile may show a little more lag than it has, never less.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from assethooks.durations import format_duration
from assethooks.kafka import GroupView, Member, MetadataReader, view_groups
from assethooks.operator import COUNT_CAP
from assethooks.operator import dead_letters as drain
from assethooks.settings import Settings
from assethooks.store import dead_letters as index
from assethooks.store.assets import last_alerts_run
from assethooks.store.dead_letters import DeadLetterQuery, DeadLetterStatus

STATUS_TIMEOUT = 5.0  # seconds each question to Kafka may take

Marks = Mapping[str, Mapping[int, tuple[int, int]]]  # topic → partition → (low, high) watermark


@dataclass(frozen=True)
class GroupSpec:
    """A consumer group of the service: the role that runs it, its name, the topics it reads."""

    role: str
    group: str
    topics: tuple[str, ...]


def service_groups(settings: Settings) -> list[GroupSpec]:
    """The service's consumer groups, as ``assethooks run`` subscribes them: the dispatcher and the projector
    read the source topic, the retrier reads every retry tier."""
    return [
        GroupSpec("dispatcher", settings.dispatcher_group, (settings.source_topic,)),
        GroupSpec("retrier", settings.retrier_group, settings.retry_topics),
        GroupSpec("projector", settings.projector_group, (settings.source_topic,)),
    ]


def partition_lag(committed: int | None, start: int, end: int) -> int:
    """How many records of a partition a group has still to read: from ``committed`` — or from ``start``
    when nothing is committed (``None``) or the committed offset is gone past retention — to ``end``."""
    position = start if committed is None else max(committed, start)
    return max(0, end - position)


@dataclass(frozen=True)
class PartitionLag:
    """One partition a group reads: its committed offset (``None``: none), the partition's start and end
    (watermarks), the lag, and the member it is assigned to (``None``: none)."""

    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    lag: int
    member_id: str | None


@dataclass(frozen=True)
class GroupStatus:
    """A consumer group of the service: Kafka's state name, its members, and its lag on every partition of
    the topics it reads (``missing_topics``: those that do not exist)."""

    role: str
    group: str
    state: str
    topics: tuple[str, ...]
    missing_topics: tuple[str, ...]
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        """The records the group has still to read, over all its partitions."""
        return sum(item.lag for item in self.partitions)

    def lag_on(self, topic: str) -> int:
        """The records the group has still to read on ``topic``."""
        return sum(item.lag for item in self.partitions if item.topic == topic)

    def plain(self) -> dict[str, Any]:
        """JSON-ready values (the keys are documented in the README, section CLI)."""
        return {
            "group": self.group,
            "state": self.state,
            "topics": list(self.topics),
            "missing_topics": list(self.missing_topics),
            "lag": self.lag,
            "members": [
                {
                    "member_id": member.member_id,
                    "client_id": member.client_id,
                    "host": member.host,
                    "partitions": [{"topic": topic, "partition": p} for topic, p in member.partitions],
                }
                for member in self.members
            ],
            "partitions": [
                {
                    "topic": item.topic,
                    "partition": item.partition,
                    "committed": item.committed,
                    "start": item.start,
                    "end": item.end,
                    "lag": item.lag,
                    "member_id": item.member_id,
                }
                for item in self.partitions
            ],
        }


def group_status(spec: GroupSpec, view: GroupView, marks: Marks) -> GroupStatus:
    """A group's status from what Kafka said of it (``view``) and of its topics' partitions (``marks``)."""
    owners = {position: member.member_id for member in view.members for position in member.partitions}
    partitions = []
    for topic in spec.topics:
        for partition, (start, end) in sorted(marks.get(topic, {}).items()):
            committed = view.committed.get((topic, partition))
            lag = partition_lag(committed, start, end)
            owner = owners.get((topic, partition))
            partitions.append(PartitionLag(topic, partition, committed, start, end, lag, owner))
    missing = tuple(topic for topic in spec.topics if not marks.get(topic))
    return GroupStatus(
        spec.role, spec.group, view.state, spec.topics, missing, view.members, tuple(partitions)
    )


@dataclass(frozen=True)
class TierBacklog:
    """One retry tier: its topic, its delay, and the tasks on it the retrier has not finished yet (due or
    not)."""

    topic: str
    delay: float
    waiting: int


@dataclass(frozen=True)
class AlertsRun:
    """One run of the alerts producer: the time it computed alerts for, when it finished, what it did."""

    at: datetime
    finished_at: datetime
    due: int
    sent: int
    already: int
    failed: int


@dataclass(frozen=True)
class ServiceStatus:
    """The whole picture: ``dead_letters_exact`` is false when more than ``COUNT_CAP`` entries are pending
    (counting stopped there); ``last_alerts_run`` is ``None`` when alerts never ran."""

    groups: tuple[GroupStatus, ...]
    tiers: tuple[TierBacklog, ...]
    pending_dead_letters: int
    dead_letters_exact: bool
    last_alerts_run: AlertsRun | None

    @property
    def retry_backlog(self) -> int:
        """The retry tasks waiting on every tier."""
        return sum(tier.waiting for tier in self.tiers)

    def plain(self) -> dict[str, Any]:
        """JSON-ready values with stable keys (``status --json`` and ``GET /api/status``; README, CLI)."""
        run = self.last_alerts_run
        return {
            "groups": {group.role: group.plain() for group in self.groups},
            "retry_backlog": {
                "waiting": self.retry_backlog,
                "tiers": [
                    {
                        "topic": tier.topic,
                        "delay": format_duration(tier.delay),
                        "delay_seconds": tier.delay,
                        "waiting": tier.waiting,
                    }
                    for tier in self.tiers
                ],
            },
            "dead_letters": {"pending": self.pending_dead_letters, "exact": self.dead_letters_exact},
            "last_alerts_run": None
            if run is None
            else {
                "at": run.at.isoformat(),
                "finished_at": run.finished_at.isoformat(),
                "due": run.due,
                "sent": run.sent,
                "already": run.already,
                "failed": run.failed,
            },
        }


def tier_backlog(settings: Settings, retrier: GroupStatus) -> tuple[TierBacklog, ...]:
    """Per retry tier, shortest delay first: the retrier group's lag on its topic."""
    return tuple(
        TierBacklog(topic, settings.tier_of(topic) or 0.0, retrier.lag_on(topic))
        for topic in settings.retry_topics
    )


def group_statuses(settings: Settings, timeout: float = STATUS_TIMEOUT) -> list[GroupStatus]:
    """The service's consumer groups as Kafka sees them now; ``KafkaUnavailableError`` when it does not
    answer a question within ``timeout`` seconds."""
    specs = service_groups(settings)
    topics = sorted({topic for spec in specs for topic in spec.topics})
    with MetadataReader.for_command(settings, timeout=timeout) as reader:
        partitions = {topic: reader.partitions(topic) for topic in topics}
        wanted: dict[str, Sequence[tuple[str, int]]] = {
            spec.group: [(topic, partition) for topic in spec.topics for partition in partitions[topic]]
            for spec in specs
        }
        views = view_groups(settings, wanted, timeout)
        # The ends after the offsets: a group that moves meanwhile shows a little more lag, never less.
        marks = {topic: reader.watermarks(topic, partitions[topic]) for topic in topics}
    return [group_status(spec, views[spec.group], marks) for spec in specs]


def pending_dead_letters(settings: Settings, engine: Engine) -> tuple[int, bool]:
    """How many dead letters are pending, after indexing the records added to the dead-letter topic since
    the last time (as every ``dlq`` command does): ``(count, exact)``, counted up to ``COUNT_CAP``."""
    drain.sync(settings, engine)
    return index.count(engine, DeadLetterQuery(status=DeadLetterStatus.PENDING), cap=COUNT_CAP)


def last_run(engine: Engine) -> AlertsRun | None:
    """The newest run of the alerts producer, or ``None`` when it never ran."""
    row = last_alerts_run(engine)
    if row is None:
        return None
    return AlertsRun(row.at, row.finished_at, row.due, row.sent, row.already, row.failed)


def service_status(settings: Settings, engine: Engine, timeout: float = STATUS_TIMEOUT) -> ServiceStatus:
    """The whole picture (see the module's docstring); Kafka is asked first, so a broker that does not
    answer fails it within seconds, with ``KafkaUnavailableError``."""
    groups = group_statuses(settings, timeout)
    retrier = next(group for group in groups if group.role == "retrier")
    pending, exact = pending_dead_letters(settings, engine)
    return ServiceStatus(tuple(groups), tier_backlog(settings, retrier), pending, exact, last_run(engine))
