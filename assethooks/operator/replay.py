"""Replay for data teams: re-deliver a time range of the source topic to chosen webhooks, without touching
the dispatcher group, or rewind the dispatcher group itself to a time while none of its members runs.

A replay honours each webhook's payload filter as the dispatcher does: an event the filter rejects is not
queued for that webhook, only counted (``ReplayReport.filtered``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from assethooks.errors import InvalidEventError, InvalidInputError
from assethooks.kafka import (
    MetadataReader,
    RecordProducer,
    move_group,
    record_key,
    running_members,
    scan,
    source_of,
)
from assethooks.operator import Progress, no_progress
from assethooks.settings import Settings
from assethooks.store.delivery_log import next_attempts
from assethooks.store.webhooks import WebhookStore
from schemas.events import parse_event
from schemas.filters import PayloadFilter, split_by_filters
from schemas.tasks import DeliveryTask, SourceRef, delivery_id_for, key_bytes, task_headers
from schemas.webhooks import Webhook

BATCH = 500  # deliveries numbered with one look at the delivery log


@dataclass(frozen=True)
class ReplayRequest:
    """What to re-deliver: the time range, and optionally only some webhooks, events and assets."""

    start: datetime
    end: datetime | None = None
    webhook_ids: Sequence[int] = ()
    events: Sequence[str] = ()
    assets: Sequence[str] = ()


@dataclass
class ReplayReport:
    """What a replay read and queued (or would queue, for a dry run)."""

    records: int = 0
    invalid: int = 0
    matched: int = 0
    deliveries: Counter[int] = field(default_factory=Counter)  # per webhook id
    filtered: Counter[int] = field(default_factory=Counter)  # events each webhook's filter rejected
    filtering: bool = False  # a target webhook has a filter


def _targets(engine: Engine, webhook_ids: Sequence[int]) -> list[Webhook]:
    store = WebhookStore(engine)
    if not webhook_ids:
        return store.list(active_only=True)
    chosen = [store.get(webhook_id) for webhook_id in webhook_ids]
    for webhook in chosen:
        if not webhook.active:
            raise InvalidInputError(f"webhook {webhook.id} ({webhook.name}) is inactive: enable it first")
    return chosen


@dataclass(frozen=True)
class RangePlan:
    """The offsets a time range covers in each partition of the source topic."""

    start: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        """How many records the range holds."""
        return sum(max(0, self.end[partition] - self.start[partition]) for partition in self.end)


def plan_range(settings: Settings, request: ReplayRequest) -> RangePlan:
    """Find where ``request``'s time range starts and ends in each partition, by record timestamp."""
    if request.end is not None and request.end <= request.start:
        raise InvalidInputError("--to must be after --from")
    topic = settings.source_topic
    with MetadataReader.for_command(settings) as reader:
        partitions = reader.partitions(topic)
        start = reader.offsets_at(topic, partitions, request.start)
        if request.end is not None:
            end = reader.offsets_at(topic, partitions, request.end)
        else:
            end = {
                partition: high for partition, (_low, high) in reader.watermarks(topic, partitions).items()
            }
    return RangePlan(start, end)


def replay_range(
    settings: Settings,
    engine: Engine,
    request: ReplayRequest,
    plan: RangePlan,
    now: datetime,
    *,
    dry_run: bool = False,
    progress: Progress = no_progress,
) -> ReplayReport:
    """Queue a delivery, due now, for each event of the range that each target webhook subscribes to.

    Delivery ids are those of the original deliveries, so receivers can drop what they already have;
    each takes the attempt number after the highest one logged for it, with a fresh budget. Events a
    webhook's filter rejects are counted in ``filtered``, not queued.
    """
    webhooks = _targets(engine, request.webhook_ids)
    filters = [
        None if webhook.filter is None else PayloadFilter(webhook.id, webhook.filter) for webhook in webhooks
    ]
    targets = list(zip(webhooks, filters, strict=True))
    report = ReplayReport(filtering=any(found is not None for _, found in targets))
    writer = None if dry_run else _NumberedWriter(settings, engine)
    for record in scan(settings, settings.source_topic, plan.start, plan.end):
        report.records += 1
        progress(1)
        try:
            event = parse_event(record.value())
        except InvalidEventError:
            report.invalid += 1
            continue
        key = record_key(record) or event.asset_key
        if (request.events and event.event.value not in request.events) or (
            request.assets and key not in request.assets
        ):
            continue
        report.matched += 1
        source = source_of(record)
        name, body = event.event.value, record.value() or b""
        pairs = [(hook, found) for hook, found in targets if hook.subscribes_to(name)]
        chosen = [hook for hook, _ in pairs]
        if any(found is not None for _, found in pairs):
            chosen, rejected = split_by_filters(chosen, [found for _, found in pairs], body)
            report.filtered.update(hook.id for hook in rejected)
        for webhook in chosen:
            report.deliveries[webhook.id] += 1
            if writer is not None:
                writer.add(body, key, webhook.id, name, source, now)
    if writer is not None:
        writer.flush()
    return report


class _NumberedWriter:
    """Queues replayed deliveries in batches, each delivery numbered after its highest logged attempt."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._topic = settings.retry_topics[0]
        self._engine = engine
        self._writer = RecordProducer.for_command(settings, "operator")
        self._batch: list[tuple[bytes | None, str | None, int, str, SourceRef, datetime]] = []

    def add(
        self,
        value: bytes | None,
        key: str | None,
        webhook_id: int,
        event: str,
        source: SourceRef,
        now: datetime,
    ) -> None:
        """Queue one delivery (numbered and sent with its batch)."""
        self._batch.append((value, key, webhook_id, event, source, now))
        if len(self._batch) >= BATCH:
            self._send()

    def _send(self) -> None:
        ids = [delivery_id_for(source, webhook_id) for _, _, webhook_id, _, source, _ in self._batch]
        numbers = next_attempts(self._engine, ids)
        for delivery_id, (value, key, webhook_id, event, source, now) in zip(ids, self._batch, strict=True):
            task = DeliveryTask.resend_of(
                delivery_id=delivery_id,
                webhook_id=webhook_id,
                event=event,
                asset_key=key,
                made=numbers[delivery_id] - 1,
                now=now,
                source=source,
            )
            self._writer.send(self._topic, value, key=key_bytes(key), headers=task_headers(task))
        self._batch.clear()

    def flush(self) -> None:
        """Send what is queued and wait until Kafka acknowledged everything."""
        self._send()
        self._writer.acknowledge()


def rewind_group(settings: Settings, to: datetime | None, group: str | None = None) -> dict[int, int]:
    """Move a consumer group of the source topic (the dispatcher's by default) to the first record at or
    after ``to``, or to the beginning when ``to`` is ``None``; refuse while a member of it runs."""
    group = group or settings.dispatcher_group
    running = running_members(settings, group)
    if running:
        raise InvalidInputError(
            f"the group {group} has {running} running member{'' if running == 1 else 's'}: stop "
            f"{'it' if running == 1 else 'them'} first"
        )
    topic = settings.source_topic
    with MetadataReader.for_command(settings) as reader:
        partitions = reader.partitions(topic)
        if to is None:
            offsets = {
                partition: low for partition, (low, _high) in reader.watermarks(topic, partitions).items()
            }
        else:
            offsets = reader.offsets_at(topic, partitions, to)
    move_group(settings, group, topic, offsets)
    return offsets
