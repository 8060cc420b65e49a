"""One delivery attempt and what follows it: the POST, the delivery-log entry, and on failure the hand-off
to the next retry tier or to the dead-letter topic. Shared by the dispatcher and the retrier."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from assethooks.clock import Clock, utc_now
from assethooks.delivery import AttemptResult, HttpSender, build_request
from assethooks.errors import DeliveryFailedError, PermanentDeliveryError, RecordTooLargeError
from assethooks.retry import next_retry
from assethooks.settings import Settings
from assethooks.store.delivery_log import DeliveryLogWriter, LogEntry
from producers.handoff import Handoff
from schemas.tasks import AttemptRecord, DeadLetter, DeadLetterKind, DeliveryTask, SourceRef
from schemas.webhooks import Webhook

log = logging.getLogger("assethooks.delivery")

MAX_KEY_IN_LOG = 100


@dataclass(frozen=True)
class Delivery:
    """One event going to one webhook, at one attempt."""

    webhook: Webhook
    body: bytes
    event: str
    asset_key: str | None
    delivery_id: str
    attempt: int
    source: SourceRef
    history: tuple[AttemptRecord, ...] = ()
    attempt_base: int = 0  # attempts made before the current budget

    def task(self, *, attempt: int, not_before: datetime, history: tuple[AttemptRecord, ...]) -> DeliveryTask:
        """This delivery as a task waiting for ``attempt`` at ``not_before``."""
        return DeliveryTask(
            delivery_id=self.delivery_id,
            webhook_id=self.webhook.id,
            event=self.event,
            asset_key=self.asset_key,
            attempt=attempt,
            attempt_base=self.attempt_base,
            not_before=not_before,
            source=self.source,
            history=history,
        )


class DeliveryPipeline:
    """Sends attempts (at most ``max_in_flight_per_webhook`` at once per webhook), logs every one, and
    routes failures through the retry schedule."""

    def __init__(
        self,
        settings: Settings,
        sender: HttpSender,
        log_writer: DeliveryLogWriter,
        handoff: Handoff,
        *,
        clock: Clock = utc_now,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._log_writer = log_writer
        self._handoff = handoff
        self._clock = clock
        self._draw = draw
        self._limits: dict[int, asyncio.Semaphore] = {}

    async def deliver(self, delivery: Delivery) -> None:
        """Attempt ``delivery`` and settle the outcome."""
        await self.settle(delivery, await self.send(delivery))

    async def send(self, delivery: Delivery) -> AttemptResult:
        """Post one attempt, waiting for a free slot of the webhook's concurrency limit."""
        limit = self._limits.get(delivery.webhook.id)
        if limit is None:
            limit = self._limits[delivery.webhook.id] = asyncio.Semaphore(
                self._settings.max_in_flight_per_webhook
            )
        async with limit:
            request = build_request(
                delivery.webhook,
                delivery.body,
                event=delivery.event,
                delivery_id=delivery.delivery_id,
                attempt=delivery.attempt,
                now=self._clock().timestamp(),
            )
            return await self._sender.send(request)

    async def settle(self, delivery: Delivery, result: AttemptResult) -> None:
        """Log the attempt and, when it failed, hand the delivery on; returns once both are durable."""
        now = self._clock()
        failure = result.failure
        entry = LogEntry(
            webhook_id=delivery.webhook.id,
            event=delivery.event,
            asset_id=(delivery.asset_key or "")[:MAX_KEY_IN_LOG] or None,
            delivery_id=delivery.delivery_id,
            attempt=delivery.attempt,
            success=failure is None,
            status_code=result.status_code,
            duration_ms=round(result.duration_ms, 3),
            error=None if failure is None else str(failure),
            response_body=result.response_body,
            source_topic=delivery.source.topic,
            source_partition=delivery.source.partition,
            source_offset=delivery.source.offset,
            created_at=now,
        )
        outcome = "delivered" if failure is None else "failed"
        log.info(
            "%s webhook=%d event=%s delivery=%s attempt=%d status=%s duration_ms=%.1f%s",
            outcome,
            delivery.webhook.id,
            delivery.event,
            delivery.delivery_id,
            delivery.attempt,
            result.status_code if result.status_code is not None else "-",
            result.duration_ms,
            "" if failure is None else f" error={failure}",
            extra={
                "webhook_id": delivery.webhook.id,
                "event": delivery.event,
                "delivery_id": delivery.delivery_id,
                "attempt": delivery.attempt,
                "status_code": result.status_code,
                "duration_ms": round(result.duration_ms, 3),
                "outcome": outcome,
            },
        )
        if failure is None:
            await self._log_writer.write(entry)
            return
        await asyncio.gather(self._log_writer.write(entry), self._hand_on(delivery, result, failure, now))

    async def _hand_on(
        self, delivery: Delivery, result: AttemptResult, failure: DeliveryFailedError, now: datetime
    ) -> None:
        record = AttemptRecord(
            attempt=delivery.attempt,
            at=now,
            status_code=result.status_code,
            error=str(failure),
            duration_ms=round(result.duration_ms, 3),
        )
        history = (*delivery.history, record)
        in_budget = delivery.attempt - delivery.attempt_base
        step = next_retry(in_budget, self._settings.retry_schedule, self._settings.retry_jitter, self._draw())
        if failure.retryable and step is not None:
            task = delivery.task(
                attempt=delivery.attempt + 1, not_before=now + timedelta(seconds=step.delay), history=history
            )
            try:
                await self._handoff.to_retry(
                    self._settings.retry_topic_for(step.tier_delay), task, delivery.body
                )
                return
            except RecordTooLargeError as exc:
                failure = PermanentDeliveryError(f"cannot wait for a retry: {exc}")
        if failure.retryable:
            kind, reason = (
                DeadLetterKind.ATTEMPTS_EXHAUSTED,
                f"{in_budget} attempts failed, last: {failure}",
            )
        else:
            kind, reason = DeadLetterKind.UNDELIVERABLE, str(failure)
        task = delivery.task(attempt=delivery.attempt, not_before=now, history=history)
        await self.dead_letter(kind, reason, source=delivery.source, body=delivery.body, task=task)

    async def dead_letter(
        self,
        kind: DeadLetterKind,
        reason: str,
        *,
        source: SourceRef,
        body: bytes | None,
        task: DeliveryTask | None = None,
        key: str | None = None,
    ) -> None:
        """Put a record on the dead-letter topic with why, and the delivery's history when there is one."""
        letter = DeadLetter(kind=kind, reason=reason, dead_at=self._clock(), source=source, task=task)
        chosen_key = key if key is not None else (task.asset_key if task else None)
        encoded_key = chosen_key.encode() if chosen_key else None
        if task is None:
            log.warning("dead-lettered %s/%d@%d: %s", source.topic, source.partition, source.offset, reason)
        else:
            log.warning(
                "dead-lettered webhook=%d event=%s delivery=%s: %s",
                task.webhook_id,
                task.event,
                task.delivery_id,
                reason,
            )
        try:
            await self._handoff.to_dead_letters(letter, body, encoded_key)
        except RecordTooLargeError:  # keep the reason and the position; the event stays in its topic
            where = f"{source.topic}[{source.partition}]@{source.offset}"
            shorter = letter.model_copy(
                update={"reason": f"{reason} (payload too large to copy here; see {where})"}
            )
            await self._handoff.to_dead_letters(shorter, None, encoded_key)
