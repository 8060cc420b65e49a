"""Draining the dead-letter topic: index it, list and show entries, replay or purge them.

Every command first indexes the records added to the topic since the last time and resolves the pending
deliveries that were delivered since they died (``sync``). A replay sends each entry back through the
pipeline — a delivery to the shortest retry tier, due now, with a fresh attempt budget and the next
attempt number; an invalid input record to the source topic — and marks it replayed only once Kafka has
acknowledged it. A crash in the middle leaves the rest pending; running the replay again finishes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from assethooks.clock import utc_now
from assethooks.durations import parse_moment
from assethooks.errors import InvalidInputError, NotFoundError
from assethooks.kafka import (
    MetadataReader,
    Record,
    RecordProducer,
    coordinates,
    raw_key,
    read_at,
    record_key,
    scan,
)
from assethooks.operator import COUNT_CAP, Listing, Progress, no_progress
from assethooks.settings import Settings
from assethooks.store import dead_letters as index
from assethooks.store.dead_letters import DeadLetterEntry, DeadLetterQuery, DeadLetterStatus
from assethooks.store.delivery_log import next_attempts
from schemas.tasks import (
    DEAD_LETTER_HEADER,
    AttemptRecord,
    DeadLetter,
    DeliveryTask,
    header_value,
    task_headers,
)

BATCH = 500
MAX_TEXT = 100


def read_letter(record: Record) -> DeadLetter | None:
    """The dead-letter metadata of a record, or ``None`` when its header is missing or invalid."""
    raw = header_value(record.headers(), DEAD_LETTER_HEADER)
    try:
        return DeadLetter.model_validate_json(raw or b"")
    except ValidationError:
        return None


def _event_name(body: bytes | None) -> str | None:
    try:
        name = json.loads(body or b"").get("event")
    except (ValueError, AttributeError):
        return None
    return name[:MAX_TEXT] if isinstance(name, str) else None


def _row(record: Record) -> dict[str, Any]:
    topic, partition, offset = coordinates(record)
    letter = read_letter(record)
    key = record_key(record)
    row: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    if letter is None:
        millis = record.timestamp()[1]
        return row | {
            "kind": "unknown",
            "reason": f"record without a valid {DEAD_LETTER_HEADER} header",
            "webhook_id": None,
            "event": _event_name(record.value()),
            "asset_id": key[:MAX_TEXT] if key is not None else None,
            "delivery_id": None,
            "attempts": 0,
            "dead_at": datetime.fromtimestamp(millis / 1000, UTC),
        }
    task = letter.task
    return row | {
        "kind": letter.kind.value,
        "reason": letter.reason,
        "webhook_id": task.webhook_id if task else None,
        "event": task.event if task else _event_name(record.value()),
        "asset_id": task.asset_key if task else key,
        "delivery_id": task.delivery_id if task else None,
        "attempts": len(task.history) if task else 0,
        "dead_at": letter.dead_at,
    }


def sync(settings: Settings, engine: Engine) -> int:
    """Index the dead-letter records not indexed yet, then resolve the pending ones whose delivery
    succeeded since; return how many were added."""
    added = _index_new(settings, engine)
    index.resolve_delivered(engine)
    return added


def _index_new(settings: Settings, engine: Engine) -> int:
    topic = settings.dlq_topic
    with MetadataReader.for_command(settings) as reader:
        partitions = reader.partitions(topic)
        if not partitions:
            return 0
        marks = reader.watermarks(topic, partitions)
    known = index.indexed_up_to(engine, topic)
    # From the first record not indexed yet (or the oldest one kept); an empty range opens no consumer.
    start = {partition: max(known.get(partition, -1) + 1, low) for partition, (low, _high) in marks.items()}
    end = {partition: high for partition, (_low, high) in marks.items()}
    added = 0
    batch: list[dict[str, Any]] = []
    for record in scan(settings, topic, start, end):
        batch.append(_row(record))
        if len(batch) >= BATCH:
            index.index(engine, batch)
            added, batch = added + len(batch), []
    index.index(engine, batch)
    return added + len(batch)


@dataclass(frozen=True)
class ShownEntry:
    """A dead letter with its record: the payload and, for deliveries, every attempt."""

    entry: DeadLetterEntry
    letter: DeadLetter | None
    body: bytes | None
    in_topic: bool

    @property
    def history(self) -> tuple[AttemptRecord, ...]:
        """Every attempt of a dead delivery, oldest first; none for an invalid event."""
        return self.letter.task.history if self.letter and self.letter.task else ()

    @property
    def payload(self) -> str | None:
        """The record's value as text (undecodable bytes replaced), ``None`` when it has none."""
        return self.body.decode("utf-8", errors="replace") if self.body is not None else None

    def plain(self) -> dict[str, Any]:
        """The entry, its attempts and its payload as JSON-ready values (``dlq show --json``, the API)."""
        return plain_entry(self.entry) | {
            "history": [item.model_dump(mode="json") for item in self.history],
            "payload": self.payload,
            "in_topic": self.in_topic,
        }


def show(settings: Settings, engine: Engine, entry_id: int) -> ShownEntry:
    """One dead letter, read back from the topic."""
    entry = index.get(engine, entry_id)
    records = read_at(settings, entry.topic, [(entry.partition, entry.offset)])
    record = records.get((entry.partition, entry.offset))
    if record is None:
        return ShownEntry(entry, None, None, in_topic=False)
    return ShownEntry(entry, read_letter(record), record.value(), in_topic=True)


@dataclass
class DrainReport:
    """What a replay or purge did."""

    done: list[int] = field(default_factory=list)  # entry ids
    missing: list[int] = field(default_factory=list)  # entries whose record is gone from the topic
    # Entries chosen by id that were no longer pending (replayed, purged or resolved before): left alone.
    already: list[DeadLetterEntry] = field(default_factory=list)


def replay(
    settings: Settings,
    engine: Engine,
    entries: Sequence[DeadLetterEntry],
    now: datetime,
    progress: Progress = no_progress,
) -> DrainReport:
    """Send ``entries`` back through the pipeline and mark them replayed, batch by batch."""
    report = DrainReport(already=[entry for entry in entries if entry.status != DeadLetterStatus.PENDING])
    pending = [entry for entry in entries if entry.status == DeadLetterStatus.PENDING]
    for start in range(0, len(pending), BATCH):
        batch = pending[start : start + BATCH]
        records = read_at(settings, settings.dlq_topic, [(entry.partition, entry.offset) for entry in batch])
        numbers = next_attempts(engine, [entry.delivery_id for entry in batch if entry.delivery_id])
        sent = []
        with RecordProducer.for_command(settings, "operator") as writer:
            for entry in batch:
                record = records.get((entry.partition, entry.offset))
                if record is None:
                    report.missing.append(entry.id)
                    continue
                _send_back(settings, writer, record, now, numbers)
                sent.append(entry.id)
        index.resolve(engine, sent, DeadLetterStatus.REPLAYED, now)  # only after Kafka acknowledged them
        report.done.extend(sent)
        progress(len(batch))
    return report


def _send_back(
    settings: Settings, writer: RecordProducer, record: Record, now: datetime, numbers: dict[str, int]
) -> None:
    letter = read_letter(record)
    if letter is None or letter.task is None:
        writer.send(settings.source_topic, record.value(), key=raw_key(record))
        return
    task = letter.task
    made = max((item.attempt for item in task.history), default=task.attempt_base)
    # The log also knows the attempts made since it died (a `logs retry`, an earlier replay).
    made = max(made, numbers.get(task.delivery_id, 1) - 1)
    again = DeliveryTask.resend_of(
        delivery_id=task.delivery_id,
        webhook_id=task.webhook_id,
        event=task.event,
        asset_key=task.asset_key,
        made=made,
        now=now,
        source=task.source,
        history=task.history,
    )
    writer.send(settings.retry_topics[0], record.value(), key=raw_key(record), headers=task_headers(again))


def purge(engine: Engine, entries: Sequence[DeadLetterEntry], now: datetime) -> DrainReport:
    """Mark the pending ones among ``entries`` purged without sending them."""
    pending = [entry.id for entry in entries if entry.status == DeadLetterStatus.PENDING]
    index.resolve(engine, pending, DeadLetterStatus.PURGED, now)
    already = [entry for entry in entries if entry.status != DeadLetterStatus.PENDING]
    return DrainReport(done=pending, already=already)


def select(
    settings: Settings,
    engine: Engine,
    ids: Sequence[int],
    filters: dict[str, Any],
    *,
    status: DeadLetterStatus | None = DeadLetterStatus.PENDING,
    everything: bool = False,
    limit: int | None = None,
    required: bool = False,
) -> list[DeadLetterEntry]:
    """The entries chosen by ids, by filters (webhook_id, event, kind, reason, since, until) or all.

    Entries chosen by id are returned whatever their status (replay and purge say which were done
    already); ``NotFoundError`` names the ids that do not exist. Filters and ``everything`` choose among
    the entries of ``status``.
    """
    query = _query(ids, filters, status=status, everything=everything, limit=limit, required=required)
    sync(settings, engine)
    if ids:
        _require_known(engine, ids)
    return index.find(engine, query)


def listing(
    settings: Settings,
    engine: Engine,
    filters: dict[str, Any],
    *,
    status: DeadLetterStatus | None = DeadLetterStatus.PENDING,
    limit: int,
) -> Listing[DeadLetterEntry]:
    """The entries of ``status`` the filters match, oldest first, at most ``limit``, and how many match
    in all (counted only when the limit cut the listing, and at most ``COUNT_CAP``)."""
    query = _query((), filters, status=status, limit=limit)
    sync(settings, engine)
    found = index.find(engine, query)
    if len(found) < limit:
        return Listing(found, len(found))
    total, exact = index.count(engine, query, cap=COUNT_CAP)
    return Listing(found, max(total, len(found)), exact)


def _query(
    ids: Sequence[int],
    filters: dict[str, Any],
    *,
    status: DeadLetterStatus | None,
    everything: bool = False,
    limit: int | None = None,
    required: bool = False,
) -> DeadLetterQuery:
    chosen = {name: value for name, value in filters.items() if value is not None}
    if required and not (ids or chosen or everything):
        raise InvalidInputError("choose entries: their ids, filters such as --webhook, or --all")
    if everything and (ids or chosen):
        raise InvalidInputError("--all cannot be combined with ids or filters")
    now = utc_now()
    for bound in ("since", "until"):
        if bound in chosen:
            chosen[bound] = parse_moment(chosen[bound], now)
    return DeadLetterQuery(
        ids=list(ids) if ids else None, status=None if ids else status, limit=limit, **chosen
    )


def _require_known(engine: Engine, ids: Sequence[int]) -> None:
    known = {entry.id for entry in index.find(engine, DeadLetterQuery(ids=list(ids), status=None))}
    unknown = sorted(set(ids) - known)
    if len(unknown) == 1:
        raise NotFoundError(f"no dead letter with id {unknown[0]}")
    if unknown:
        shown = ", ".join(str(entry_id) for entry_id in unknown[:10])
        raise NotFoundError(f"no dead letters with ids {shown}{', …' if len(unknown) > 10 else ''}")


def plain_entry(entry: DeadLetterEntry) -> dict[str, Any]:
    """A dead-letter entry as JSON-ready values."""
    values = {name: getattr(entry, name) for name in DeadLetterEntry.__dataclass_fields__}
    values["dead_at"] = entry.dead_at.isoformat()
    values["resolved_at"] = entry.resolved_at.isoformat() if entry.resolved_at else None
    return values
