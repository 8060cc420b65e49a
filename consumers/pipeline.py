"""One delivery attempt and what follows it: the POST, the delivery-log entry, and on failure the hand-off
to the next retry tier or to the dead-letter topic. Shared by the dispatcher and the retrier."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from assethooks import metrics
from assethooks.clock import Clock, utc_now
from assethooks.delivery import AttemptResult, HttpSender, build_request
from assethooks.errors import (
    DeliveryFailedError,
    EndpointGoneError,
    PermanentDeliveryError,
    RecordTooLargeError,
)
from assethooks.retry import next_retry
from assethooks.settings import Settings
from assethooks.store.delivery_log import DeliveryLogWriter, LogEntry
from consumers.breaker import Breakers, Transition
from consumers.health import WebhookHealth
from consumers.lanes import Lanes, all_done
from producers.handoff import Handoff
from schemas.tasks import AttemptRecord, DeadLetter, DeadLetterKind, DeliveryTask, SourceRef
from schemas.webhooks import Webhook

log = logging.getLogger("assethooks.delivery")

MAX_KEY_IN_LOG = 100


@dataclass(slots=True)  # not frozen: that makes creating one, on the hot path, several times slower
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

    @property
    def lane(self) -> int:
        """Deliveries run in their webhook's lane."""
        return self.webhook.id

    @property
    def affinity(self) -> str:
        """One asset's deliveries to one webhook keep their order."""
        return self.asset_key or ""

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
    """Attempts deliveries in per-webhook lanes (``consumers.lanes``), logs every attempt, and routes
    failures through the retry schedule; a congested webhook's waiting deliveries move to a retry tier."""

    def __init__(
        self,
        settings: Settings,
        sender: HttpSender,
        log_writer: DeliveryLogWriter,
        handoff: Handoff,
        health: WebhookHealth,
        *,
        clock: Clock = utc_now,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._log_writer = log_writer
        self._handoff = handoff
        self._health = health
        self._clock = clock
        self._draw = draw
        self._breakers = Breakers(
            threshold=settings.breaker_failures,
            cooldown=settings.breaker_cooldown,
            max_cooldown=settings.breaker_max_cooldown,
        )
        self._lanes: Lanes[Delivery] = Lanes(
            workers=settings.max_in_flight_per_webhook,
            max_running=settings.max_requests,
            spill_after=settings.spill_after,
            attempt=self._attempt,
            spill=self._postpone,
        )

    def start(self) -> None:
        """Start the lanes' congestion watch."""
        self._lanes.start()

    async def close(self) -> None:
        """Stop the congestion watch."""
        await self._lanes.close()

    def submit(self, delivery: Delivery) -> asyncio.Future[None]:
        """Attempt ``delivery`` in its webhook's lane; the future completes once the outcome is durable."""
        return self._lanes.submit(delivery)

    async def _attempt(self, delivery: Delivery) -> asyncio.Future[None]:
        webhook_id = delivery.webhook.id
        now = time.monotonic()
        if not self._breakers.allow(webhook_id, now):
            wait = self._breakers.remaining(webhook_id, now)
            return asyncio.ensure_future(
                self._postpone(delivery, "its circuit is open after repeated failures", wait)
            )
        result = await self._send(delivery)
        failure = result.failure
        self._health.record(webhook_id, ok=failure is None, at=self._clock())
        trips = failure is not None and failure.trips_breaker
        changed = self._breakers.record(webhook_id, ok=failure is None, trips=trips, now=time.monotonic())
        if changed is Transition.OPENED:
            metrics.CIRCUITS_OPENED.inc()
            metrics.OPEN_CIRCUITS.inc()
            log.warning(
                "circuit opened for webhook %d: its deliveries skip to their next retry tier", webhook_id
            )
        elif changed is Transition.CLOSED:
            metrics.OPEN_CIRCUITS.dec()
            log.warning("circuit closed for webhook %d: deliveries are sent again", webhook_id)
        return self._settle(delivery, result)

    async def _send(self, delivery: Delivery) -> AttemptResult:
        """Build and post one attempt's request. Whatever goes wrong is a failed attempt, never an error
        of the consumer: a request that cannot be built is undeliverable (and replayable once fixed)."""
        try:
            request = build_request(
                delivery.webhook,
                delivery.body,
                event=delivery.event,
                delivery_id=delivery.delivery_id,
                attempt=delivery.attempt,
                now=self._clock(),
            )
            return await self._sender.send(request)
        except Exception as exc:
            log.exception("attempt of delivery %s could not be made", delivery.delivery_id)
            failure = PermanentDeliveryError(f"the request cannot be sent: {type(exc).__name__}: {exc}")
            return AttemptResult(None, 0.0, None, failure)

    def _settle(self, delivery: Delivery, result: AttemptResult) -> asyncio.Future[None]:
        """Log the attempt and, when it failed, hand the delivery on; the future completes once both are
        durable (the caller does not wait: the lane goes on with its next delivery)."""
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
        (metrics.DELIVERED if failure is None else metrics.FAILED).inc()
        metrics.ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        if log.isEnabledFor(logging.INFO):
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
        logged = self._log_writer.write(entry)
        if failure is None:
            return logged
        return all_done(logged, self._hand_on(delivery, result, failure, now))

    async def _postpone(
        self, delivery: Delivery, why: str = "the webhook is congested", at_least: float = 0
    ) -> None:
        """Move a delivery its webhook cannot take now (congested, or its circuit is open) to the retry tier
        it would wait in (one that waits ``at_least`` seconds), without using an attempt."""
        schedule = self._settings.retry_schedule
        waited = delivery.attempt - delivery.attempt_base  # 1 for a first attempt
        delay = max(schedule[min(max(waited - 2, 0), len(schedule) - 1)], at_least)
        tier = self._settings.tier_for(delay)
        task = delivery.task(
            attempt=delivery.attempt,
            not_before=self._clock() + timedelta(seconds=delay),
            history=delivery.history,
        )
        log.info(
            "postponed webhook=%d event=%s delivery=%s attempt=%d: %s",
            delivery.webhook.id,
            delivery.event,
            delivery.delivery_id,
            delivery.attempt,
            why,
        )
        topic = self._settings.retry_topic_for(tier)
        metrics.POSTPONED.inc()
        try:
            await self._handoff.to_retry(topic, task, delivery.body)
            metrics.HANDOFFS.labels(topic).inc()
        except RecordTooLargeError as exc:
            await self.dead_letter(
                DeadLetterKind.UNDELIVERABLE,
                f"cannot wait for a retry: {exc}",
                source=delivery.source,
                body=delivery.body,
                task=task,
            )

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
        if isinstance(failure, EndpointGoneError):
            self._health.gone(
                delivery.webhook.id, f"the endpoint answered 410 Gone at {now.isoformat(timespec='seconds')}"
            )
        if failure.retryable and step is not None:
            delay = step.delay
            if failure.retry_after is not None:  # the endpoint said when: not sooner (within reason)
                delay = max(delay, min(failure.retry_after, self._settings.retry_after_max))
            task = delivery.task(
                attempt=delivery.attempt + 1, not_before=now + timedelta(seconds=delay), history=history
            )
            tier = step.tier_delay if delay == step.delay else self._settings.tier_for(delay)
            topic = self._settings.retry_topic_for(tier)
            try:
                await self._handoff.to_retry(topic, task, delivery.body)
                metrics.HANDOFFS.labels(topic).inc()
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
        metrics.DEAD_LETTERS.labels(kind.value).inc()
        try:
            await self._handoff.to_dead_letters(letter, body, encoded_key)
        except RecordTooLargeError:  # keep the reason and the position; the event stays in its topic
            where = f"{source.topic}[{source.partition}]@{source.offset}"
            shorter = letter.model_copy(
                update={"reason": f"{reason} (payload too large to copy here; see {where})"}
            )
            await self._handoff.to_dead_letters(shorter, None, encoded_key)
