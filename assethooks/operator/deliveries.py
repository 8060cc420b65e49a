"""The test webhook (seed §7) and re-sending failed deliveries from the delivery log (seed §6)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from assethooks.clock import utc_now
from assethooks.delivery import AttemptResult, HttpSender, build_request
from assethooks.durations import parse_moment
from assethooks.errors import InvalidInputError
from assethooks.kafka import Record, RecordProducer, coordinates, read_at
from assethooks.operator import COUNT_CAP, Listing, Progress, no_progress
from assethooks.settings import Settings
from assethooks.store.delivery_log import (
    LogEntry,
    LoggedAttempt,
    LogQuery,
    count_attempts,
    get_attempt,
    insert_entries,
    newest_attempt,
    next_attempts,
    query_attempts,
)
from assethooks.store.webhooks import WebhookStore
from schemas.events import TEST_EVENT, sample_test_event
from schemas.tasks import DeliveryTask, SourceRef, key_bytes, task_headers
from schemas.webhooks import Webhook


@dataclass(frozen=True)
class LogFilters:
    """The delivery-log filters of ``logs`` and the admin API; times are ISO 8601 or a duration ago."""

    webhook_id: int | None = None
    event: str | None = None
    asset: str | None = None
    status: str | None = None  # "ok" or "failed"
    since: str | None = None
    until: str | None = None

    def given(self) -> bool:
        """True when at least one filter is set."""
        return any(value is not None for value in vars(self).values())

    def query(self, limit: int | None, *, newest_of_delivery: bool = False) -> LogQuery:
        """The log query these filters describe."""
        if self.status not in (None, "ok", "failed"):
            raise InvalidInputError(f"status must be ok or failed, not {self.status!r}")
        now = utc_now()
        return LogQuery(
            webhook_id=self.webhook_id,
            event=self.event,
            asset_id=self.asset,
            success=None if self.status is None else self.status == "ok",
            since=None if self.since is None else parse_moment(self.since, now),
            until=None if self.until is None else parse_moment(self.until, now),
            limit=limit,
            newest_of_delivery=newest_of_delivery,
        )


def list_attempts(engine: Engine, filters: LogFilters, limit: int) -> Listing[LoggedAttempt]:
    """The attempts the filters match, newest first, at most ``limit``, and how many match in all
    (counted only when the limit cut the listing, and at most ``COUNT_CAP``)."""
    query = filters.query(limit)
    found = query_attempts(engine, query)
    if len(found) < limit:
        return Listing(found, len(found))
    total, exact = count_attempts(engine, query, cap=COUNT_CAP)
    return Listing(found, max(total, len(found)), exact)


def attempts_to_retry(
    engine: Engine, log_ids: Sequence[int], filters: LogFilters, limit: int | None = None
) -> list[LoggedAttempt]:
    """The attempts a re-send starts from: the given log entries, or the failed ones the filters match."""
    if log_ids and filters.given():
        raise InvalidInputError("give log entry ids or filters, not both")
    if log_ids:
        return [get_attempt(engine, log_id) for log_id in log_ids]
    if not filters.given():
        raise InvalidInputError(
            "choose what to retry: log entry ids, or filters such as --webhook and --since"
        )
    if filters.status == "ok":
        raise InvalidInputError("only failed deliveries can be retried")
    failed = replace(filters, status="failed")
    return query_attempts(engine, failed.query(limit, newest_of_delivery=True))


def plain_attempt(attempt: LoggedAttempt) -> dict[str, Any]:
    """A logged attempt as JSON-ready values."""
    due = attempt.next_attempt_at
    return {name: getattr(attempt, name) for name in LoggedAttempt.__dataclass_fields__} | {
        "created_at": attempt.created_at.isoformat(),
        "next_attempt_at": None if due is None else due.isoformat(),
    }


@dataclass(frozen=True)
class TestDelivery:
    """What a test delivery got, and how it was logged."""

    __test__ = False  # not a pytest class

    result: AttemptResult
    entry: LogEntry


async def send_test_delivery(
    settings: Settings, engine: Engine, webhook: Webhook, now: datetime
) -> TestDelivery:
    """Send the test payload to ``webhook`` (active or not) through the delivery code, and log it."""
    body = json.dumps(sample_test_event(now), separators=(",", ":")).encode()
    delivery_id = str(uuid.uuid4())
    request = build_request(webhook, body, event=TEST_EVENT, delivery_id=delivery_id, attempt=1, now=now)
    async with HttpSender.for_settings(settings) as sender:
        result = await sender.send(request)
    entry = LogEntry(
        webhook_id=webhook.id,
        event=TEST_EVENT,
        asset_id=None,
        delivery_id=delivery_id,
        attempt=1,
        success=result.ok,
        status_code=result.status_code,
        duration_ms=round(result.duration_ms, 3),
        error=None if result.failure is None else str(result.failure),
        response_body=result.response_body,
        source_topic=None,
        source_partition=None,
        source_offset=None,
        created_at=now,
    )
    await asyncio.to_thread(insert_entries, engine, [entry])
    return TestDelivery(result, entry)


@dataclass
class ResendReport:
    """What a re-send did: deliveries queued again, and those skipped with why."""

    queued: list[str] = field(default_factory=list)  # delivery ids
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (log id, reason)


def resend_failed(
    settings: Settings,
    engine: Engine,
    attempts: Sequence[LoggedAttempt],
    now: datetime,
    progress: Progress = no_progress,
) -> ResendReport:
    """Queue the failed deliveries of ``attempts`` for their next attempt, due now, with a fresh budget.

    A delivery is re-sent once however many of its attempts are given, and only when its newest attempt
    failed; its event is read back from the source topic. The attempt takes the number after the highest
    one logged for its delivery.
    """
    report = ResendReport()
    chosen: dict[str, LoggedAttempt] = {}
    for attempt in attempts:
        reason = _not_resendable(engine, attempt)
        if reason is not None:
            report.skipped.append((attempt.id, reason))
        elif attempt.delivery_id not in chosen:
            chosen[attempt.delivery_id] = newest_attempt(engine, attempt.delivery_id)
    records: dict[str, Record] = {}
    for topic in {attempt.source_topic for attempt in chosen.values() if attempt.source_topic}:
        in_topic = {
            delivery_id: (attempt.source_partition or 0, attempt.source_offset or 0)
            for delivery_id, attempt in chosen.items()
            if attempt.source_topic == topic
        }
        found = read_at(settings, topic, in_topic.values())
        records.update(
            {delivery_id: found[where] for delivery_id, where in in_topic.items() if where in found}
        )
    existing = WebhookStore(engine).ids()
    numbers = next_attempts(engine, chosen)
    with RecordProducer.for_command(settings, "operator") as writer:
        for delivery_id, attempt in chosen.items():
            record = records.get(delivery_id)
            if record is None:
                report.skipped.append((attempt.id, f"its event is no longer in {attempt.source_topic}"))
            elif attempt.webhook_id not in existing:
                report.skipped.append((attempt.id, f"webhook {attempt.webhook_id} was deleted"))
            else:
                _queue(settings, writer, attempt, record, now, numbers[delivery_id])
                report.queued.append(delivery_id)
            progress(1)
    return report


def _queue(
    settings: Settings,
    writer: RecordProducer,
    attempt: LoggedAttempt,
    record: Record,
    now: datetime,
    number: int,
) -> None:
    topic, partition, offset = coordinates(record)
    task = DeliveryTask.resend_of(
        delivery_id=attempt.delivery_id,
        webhook_id=attempt.webhook_id,
        event=attempt.event,
        asset_key=attempt.asset_id,
        made=number - 1,
        now=now,
        source=SourceRef(topic=topic, partition=partition, offset=offset),
    )
    writer.send(
        settings.retry_topics[0], record.value(), key=key_bytes(attempt.asset_id), headers=task_headers(task)
    )


def _not_resendable(engine: Engine, attempt: LoggedAttempt) -> str | None:
    if attempt.source_topic is None:
        return "a test delivery; send a new one with `assethooks webhooks test`"
    if attempt.success:
        return "this attempt succeeded"
    newest = newest_attempt(engine, attempt.delivery_id)
    if newest.success:
        return f"delivery {attempt.delivery_id} succeeded at attempt {newest.attempt}"
    return None
