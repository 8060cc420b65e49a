"""One delivery attempt and what follows it: the POST, the delivery-log entry, and on failure the hand-off
to the next retry tier or to the dead-letter topic. Shared by the dispatcher and the retrier."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from assethooks import metrics
from assethooks.clock import Clock, utc_now
from assethooks.completion import Done, follow
from assethooks.delivery import AttemptResult, HttpSender, build_request
from assethooks.errors import (
    DeliveryFailedError,
    DeliveryTimeoutError,
    EndpointGoneError,
    HttpStatusError,
    PermanentDeliveryError,
    RecordTooLargeError,
)
from assethooks.logging_setup import info_lines
from assethooks.routing import Retry, next_retry, postponement
from assethooks.settings import Settings
from assethooks.store.delivery_log import DeliveryLogWriter, LogEntry
from consumers.breaker import Breakers, Transition
from consumers.health import WebhookHealth
from consumers.lanes import Lanes, Outcome, Spill
from consumers.pacing import Concurrency, GroupShare, RateLimits
from producers.handoff import Handoff
from schemas.tasks import AttemptRecord, DeadLetter, DeadLetterKind, DeliveryTask, SourceRef
from schemas.webhooks import Webhook

log = logging.getLogger("assethooks.delivery")

MAX_KEY_IN_LOG = 100
RETRIES_REMEMBERED = 100_000  # deliveries whose last retry attempt this process remembers
INITIAL_CONCURRENCY = 4  # concurrent attempts a webhook starts with (``consumers.pacing``)
MIN_WINDOW = 16  # successes that raise a webhook's concurrency by one, at least


@dataclass(slots=True)  # not frozen: that makes creating one, on the hot path, several times slower
class Delivery:
    """One event going to one webhook, at one attempt; ``done`` is called once its outcome is durable."""

    webhook: Webhook
    body: bytes
    event: str
    asset_key: str | None
    delivery_id: str
    attempt: int
    source: SourceRef
    done: Done
    history: tuple[AttemptRecord, ...] = ()
    attempt_base: int = 0  # attempts made before the current budget
    resend: bool = False  # an explicit re-send (``DeliveryTask.resend``), and its retries
    queued_at: float = 0.0  # when it entered its lane
    turn: float = 0.0  # when it may start, under its webhook's rate limit

    @property
    def lane(self) -> int:
        """Deliveries run in their webhook's lane."""
        return self.webhook.id

    @property
    def affinity(self) -> str:
        """One asset's deliveries to one webhook keep their order."""
        return self.asset_key or ""

    @property
    def rate(self) -> float | None:
        """The webhook's rate limit, per second, for the whole group."""
        return self.webhook.rate_per_second

    def task(self, *, attempt: int, not_before: datetime, history: tuple[AttemptRecord, ...]) -> DeliveryTask:
        """This delivery as a task waiting for ``attempt`` at ``not_before``."""
        return DeliveryTask.retry(
            delivery_id=self.delivery_id,
            webhook_id=self.webhook.id,
            event=self.event,
            asset_key=self.asset_key,
            attempt=attempt,
            attempt_base=self.attempt_base,
            resend=self.resend,
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
        share: GroupShare,
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
        self._info = info_lines(log)  # one INFO line per attempt, cheaply
        self._postponements: Counter[tuple[int, str]] = Counter()  # by webhook and reason, this second
        self._teller: asyncio.Task[None] | None = None
        # The newest retry attempt made here of recent deliveries, and whether one succeeded.
        self._retried: OrderedDict[str, tuple[int, bool]] = OrderedDict()
        self._lanes: Lanes[Delivery] = Lanes(
            workers=settings.max_in_flight_per_webhook,
            max_running=settings.max_requests,
            spill_after=settings.spill_after,
            # a limited webhook's waiting deliveries hold a quarter of the records in flight at most
            limits=RateLimits(
                share, max_wait=settings.rate_limit_wait, max_waiting=settings.max_in_flight // 4
            ),
            concurrency=lambda: Concurrency(
                initial=INITIAL_CONCURRENCY, maximum=settings.max_in_flight_per_webhook, window=MIN_WINDOW
            ),
            attempt=self._attempt,
            spill=self._spilled,
            failed=lambda delivery, error: delivery.done(error),
        )

    def start(self) -> None:
        """Start the lanes' congestion watch, and the lines telling what was postponed."""
        self._lanes.start()
        self._teller = asyncio.get_running_loop().create_task(self._tell_postponed(), name="postponed")

    async def close(self) -> None:
        """Stop the congestion watch."""
        await self._lanes.close()
        if self._teller is not None:
            self._teller.cancel()
            await asyncio.gather(self._teller, return_exceptions=True)
        self._told()

    async def _tell_postponed(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self._told()

    def _told(self) -> None:
        """One INFO line per webhook and reason for the deliveries postponed since the last one: a dead
        endpoint would otherwise write a line for each of its deliveries."""
        postponed, self._postponements = self._postponements, Counter()
        for (webhook_id, why), count in sorted(postponed.items()):
            noun = "delivery" if count == 1 else "deliveries"
            log.info("postponed %d %s of webhook %d to a retry tier: %s", count, noun, webhook_id, why)

    def submit(self, delivery: Delivery) -> None:
        """Attempt ``delivery`` in its webhook's lane; ``delivery.done`` is called once the outcome is
        durable."""
        self._lanes.submit(delivery)

    async def _attempt(self, delivery: Delivery) -> Outcome | None:
        webhook_id = delivery.webhook.id
        if delivery.attempt > 1 and (why := self._made_already(delivery)) is not None:
            self.drop(delivery, why)
            return None
        now = time.monotonic()
        if not self._breakers.allow(webhook_id, now):
            wait = self._breakers.remaining(webhook_id, now)
            self._postpone(delivery, "its circuit is open after repeated failures", wait)
            return None
        # Whatever goes wrong is a failed attempt, never an error of the consumer: a request that cannot
        # be built is undeliverable (and replayable once mended).
        attempted = self._clock()  # the attempt's time: its timestamp header and its log entry
        try:
            request = build_request(
                delivery.webhook,
                delivery.body,
                event=delivery.event,
                delivery_id=delivery.delivery_id,
                attempt=delivery.attempt,
                now=attempted,
            )
            result = await self._sender.send(request)
        except Exception as exc:
            log.exception("attempt of delivery %s could not be made", delivery.delivery_id)
            problem = f"the request cannot be sent: {type(exc).__name__}: {exc}"
            result = AttemptResult(None, 0.0, None, PermanentDeliveryError(problem))
        failure = result.failure
        self._health.record(webhook_id, ok=failure is None, at=attempted)
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
        if changed is not None:  # for the operators: the store keeps each webhook's last reported state
            remaining = self._breakers.remaining(webhook_id, time.monotonic())
            self._health.circuit(
                webhook_id,
                None if changed is Transition.CLOSED else self._clock() + timedelta(seconds=remaining),
                at=attempted,
            )
        self._log_and_hand_on(delivery, result, attempted)
        if failure is None:
            return Outcome.OK
        return Outcome.OVERLOADED if _overloaded(failure) else Outcome.FAILED

    def _log_and_hand_on(self, delivery: Delivery, result: AttemptResult, now: datetime) -> None:
        """Log the attempt (made at ``now``) and, when it failed, hand the delivery on; ``delivery.done`` is
        called once both are durable (the caller does not wait: the lane goes on with its next delivery)."""
        failure = result.failure
        source = delivery.source
        entry = LogEntry(  # by position: the keywords cost more than the rest of it (a hot path)
            delivery.webhook.id,
            delivery.event,
            (delivery.asset_key or "")[:MAX_KEY_IN_LOG] or None,
            delivery.delivery_id,
            delivery.attempt,
            failure is None,
            result.status_code,
            round(result.duration_ms, 3),
            None if failure is None else str(failure),
            result.response_body,
            source.topic,
            source.partition,
            source.offset,
            now,
        )
        outcome = "delivered" if failure is None else "failed"
        (metrics.DELIVERED if failure is None else metrics.FAILED).inc()
        metrics.ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        if self._info is not None:
            status = "-" if result.status_code is None else result.status_code
            error = "" if failure is None else f" error={failure}"
            self._info(
                f"{outcome} webhook={delivery.webhook.id} event={delivery.event}"
                f" delivery={delivery.delivery_id} attempt={delivery.attempt} status={status}"
                f" duration_ms={result.duration_ms:.1f}{error}",
                {
                    "webhook_id": delivery.webhook.id,
                    "event": delivery.event,
                    "delivery_id": delivery.delivery_id,
                    "attempt": delivery.attempt,
                    "status_code": result.status_code,
                    "duration_ms": round(result.duration_ms, 3),
                    "outcome": outcome,
                },
            )
        if delivery.attempt > 1:  # a retry: remembered, for another task of the same delivery
            _made, succeeded = self._retried.pop(delivery.delivery_id, (0, False))
            self._retried[delivery.delivery_id] = (delivery.attempt, succeeded or failure is None)
            if len(self._retried) > RETRIES_REMEMBERED:
                self._retried.popitem(last=False)
        if failure is None:
            self._log_writer.write(entry, delivery.done)
            return
        follow(self._hand_on_then_log(delivery, result, failure, now, entry), delivery.done)

    async def _hand_on_then_log(
        self,
        delivery: Delivery,
        result: AttemptResult,
        failure: DeliveryFailedError,
        now: datetime,
        entry: LogEntry,
    ) -> None:
        """A failed attempt is logged once its delivery is handed on: a failure in the log means its retry
        or dead letter exists, so a record read again after a crash does not hand it on twice."""
        entry.next_attempt_at = await self._hand_on(delivery, result, failure, now)
        await self._log_writer.written(entry)

    def _made_already(self, delivery: Delivery) -> str | None:
        """Why a retry need not be attempted, by what this process did since it last asked the log: two
        tasks of one delivery (a scheduled retry and a re-send by hand) can come due together, both before
        either's attempt is in the log."""
        attempt, succeeded = self._retried.get(delivery.delivery_id, (0, False))
        if attempt >= delivery.attempt:
            return f"attempt {delivery.attempt} was just made by another task of the same delivery"
        if succeeded and not delivery.resend:
            return "it was delivered already"
        return None

    def drop(self, delivery: Delivery, why: str) -> None:
        """Do not attempt ``delivery`` (a retry made already): say why and count it done."""
        metrics.REDELIVERIES_SKIPPED.inc()
        log.info(
            "dropped the retry of delivery %s (webhook %d): %s",
            delivery.delivery_id,
            delivery.webhook.id,
            why,
        )
        delivery.done(None)

    def hurry(self, on: bool) -> None:
        """While a stop or a revocation waits for the work (``on``): the delivery log writes at once."""
        self._log_writer.hurry(on)

    def requeue(self, task: DeliveryTask, body: bytes, tier: float, done: Done) -> None:
        """Move a task that waits longer than its tier to the back of ``tier`` (``assethooks.routing``);
        ``done`` once the tier has it."""
        topic = self._settings.retry_topic_for(tier)
        self._handoff.to_retry_then(topic, task, body, done)

    def _spilled(self, delivery: Delivery, why: Spill, wait: float) -> None:
        """A delivery the lanes did not attempt: congested, it waits like a retry; over its rate limit, it
        waits exactly its place in the overflow schedule (``wait``), whatever its attempt."""
        self._postpone(delivery, why.value, wait, exactly=why is Spill.OVER_RATE)

    def _postpone(self, delivery: Delivery, why: str, at_least: float = 0, *, exactly: bool = False) -> None:
        """Move a delivery its webhook cannot take now (congested, over its rate limit, or its circuit is
        open) to the retry tier it would wait in (one that waits ``at_least`` seconds), without using an
        attempt; ``delivery.done`` once the tier has it. No future or task: a dead endpoint sends every
        delivery of its webhook here."""
        settings = self._settings
        if exactly:
            wait = Retry(settings.tiers.for_wait(at_least), at_least)
        else:
            wait = postponement(
                delivery.attempt - delivery.attempt_base,
                settings.retry_schedule,
                settings.tiers,
                at_least=at_least,
            )
        topic = settings.retry_topic_for(wait.tier)
        task = delivery.task(
            attempt=delivery.attempt,
            not_before=self._clock() + timedelta(seconds=wait.delay),
            history=delivery.history,
        )
        self._postponements[(delivery.webhook.id, why)] += 1  # told once a second, not once a delivery
        metrics.POSTPONED.inc()
        self._handoff.to_retry_then(
            topic, task, delivery.body, partial(self._postponed, delivery, topic, task)
        )

    def _postponed(
        self, delivery: Delivery, topic: str, task: DeliveryTask, error: BaseException | None
    ) -> None:
        if error is None:
            metrics.handed_off(topic)
            delivery.done(None)
        elif isinstance(error, RecordTooLargeError):
            reason = f"cannot wait for a retry: {error}"
            dead = self.dead_letter(
                DeadLetterKind.UNDELIVERABLE, reason, source=delivery.source, body=delivery.body, task=task
            )
            follow(dead, delivery.done)
        else:
            delivery.done(error)

    async def _hand_on(
        self, delivery: Delivery, result: AttemptResult, failure: DeliveryFailedError, now: datetime
    ) -> datetime | None:
        """Put a failed delivery in its next retry tier and return when it is due, or dead-letter it."""
        record = AttemptRecord(
            attempt=delivery.attempt,
            at=now,
            status_code=result.status_code,
            error=str(failure),
            duration_ms=round(result.duration_ms, 3),
        )
        history = (*delivery.history, record)
        in_budget = delivery.attempt - delivery.attempt_base
        settings = self._settings
        step = next_retry(
            in_budget,
            settings.retry_schedule,
            settings.tiers,
            self._draw(),
            retry_after=failure.retry_after,
            retry_after_max=settings.retry_after_max,
        )
        if isinstance(failure, EndpointGoneError):
            self._health.gone(
                delivery.webhook.id, f"the endpoint answered 410 Gone at {now.isoformat(timespec='seconds')}"
            )
        if failure.retryable and step is not None:
            due = now + timedelta(seconds=step.delay)
            task = delivery.task(attempt=delivery.attempt + 1, not_before=due, history=history)
            topic = settings.retry_topic_for(step.tier)
            try:
                await self._handoff.to_retry(topic, task, delivery.body)
                metrics.handed_off(topic)
                return due
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
        return None

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


def _overloaded(failure: DeliveryFailedError) -> bool:
    """True for the answers that ask for fewer concurrent requests: 429, 503, or no answer in time."""
    if isinstance(failure, DeliveryTimeoutError):
        return True
    return isinstance(failure, HttpStatusError) and failure.status_code in {429, 503}
