"""The retrier: reads the retry-tier topics and makes each task's next attempt when it is due.

A tier partition whose head is not due yet is paused until it is (``Defer``); a tier holds only waits
within its band, so the head is about the next one due, and a task that waits longer than its tier hops to
the back of one (``assethooks.routing``). A task whose webhook was deleted or disabled
meanwhile goes to the dead-letter topic, from where it can be replayed.

Before an attempt the delivery log is asked (``consumers.ledger``): a task whose delivery succeeded since
(a ``logs retry`` got there first), or whose attempt the log holds already (the task was read again after a
crash), is dropped with a line saying why. Explicit re-sends (``logs retry``, ``dlq replay``, ``replay``)
are dropped only in the second case: they are meant to send again.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from assethooks.clock import Clock, utc_now
from assethooks.completion import Done, follow
from assethooks.kafka import Record, record_key, source_of, written_at
from assethooks.routing import Hop, Wait, in_tier
from assethooks.settings import Settings
from consumers.ledger import DeliveryLedger
from consumers.pipeline import Delivery, DeliveryPipeline
from consumers.runtime import Defer
from consumers.subscriptions import SubscriptionCache
from schemas.tasks import TASK_HEADER, DeadLetterKind, DeliveryTask, header_value

log = logging.getLogger(__name__)


class Retrier:
    """Attempts retry tasks when they are due (a ``consumers.runtime.Handler``)."""

    def __init__(
        self,
        pipeline: DeliveryPipeline,
        subscriptions: SubscriptionCache,
        ledger: DeliveryLedger,
        settings: Settings,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._pipeline = pipeline
        self._settings = settings
        self._subscriptions = subscriptions
        self._ledger = ledger
        self._clock = clock

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Nothing to prepare: each task is checked against the log when it is due."""

    def schedule(self, record: Record, done: Done) -> Defer | None:
        """Start the work for one retry record, or ``Defer`` until it is due."""
        body = record.value()
        raw_task = header_value(record.headers(), TASK_HEADER)
        try:
            task = DeliveryTask.model_validate_json(raw_task or b"")
        except ValidationError:
            dead = self._pipeline.dead_letter(
                DeadLetterKind.INVALID_EVENT,
                f"retry record without a valid {TASK_HEADER} header",
                source=source_of(record),
                body=body,
                key=record_key(record),
            )
            follow(dead, done)
            return None
        now = self._clock().timestamp()
        due = task.not_before.timestamp()
        if due > now:
            tier = self._settings.tier_of(record.topic() or "")
            put_at = min(written_at(record) or now, now)
            step = (
                Wait(due)
                if tier is None
                else in_tier(self._settings.tiers, tier, put_at=put_at, due=due, now=now)
            )
            if isinstance(step, Wait):
                return Defer(step.until)
            if isinstance(step, Hop) and body is not None:  # to the back of a tier: it holds no one back
                self._pipeline.requeue(task, body, step.tier, done)
                return None
        webhook = self._subscriptions.get(task.webhook_id)
        if webhook is None or not webhook.active or body is None:
            if body is None:
                reason = "retry record has no body"
            else:
                reason = f"webhook {task.webhook_id} was {'deleted' if webhook is None else 'disabled'}"
            dead = self._pipeline.dead_letter(
                DeadLetterKind.UNDELIVERABLE, reason, source=task.source, body=body, task=task
            )
            follow(dead, done)
            return None
        delivery = Delivery(
            webhook=webhook,
            body=body,
            event=task.event,
            asset_key=task.asset_key,
            delivery_id=task.delivery_id,
            attempt=task.attempt,
            source=task.source,
            done=done,
            history=task.history,
            attempt_base=task.attempt_base,
            resend=task.resend,
        )
        follow(self._unless_made(task, delivery), _only_errors(done))
        return None

    async def _unless_made(self, task: DeliveryTask, delivery: Delivery) -> None:
        """Submit ``delivery`` unless the log says it is done; then its ``done`` is called here."""
        attempt, succeeded = (await self._ledger.logged([task.delivery_id])).get(task.delivery_id, (0, False))
        why = None
        if attempt >= task.attempt:
            why = f"attempt {task.attempt} is in the log already (the task was read again)"
        elif succeeded and not task.resend:
            why = "it was delivered already"
        if why is None:
            self._pipeline.submit(delivery)
        else:
            self._pipeline.drop(delivery, why)


def _only_errors(done: Done) -> Done:
    """``done`` for a failure of the check itself (the delivery reports its own outcome)."""

    def report(error: BaseException | None) -> None:
        if error is not None:
            done(error)

    return report
