"""Webhook health: since when each webhook fails, and switching off the ones that fail for too long.

The delivery pipeline reports every outcome and every change of a circuit here (in memory); every few seconds
the news goes to the SQL store, where all processes share it: a success clears ``failing_since`` and the
circuit, a failure sets ``failing_since`` if unset, a circuit's change is kept with its time. A
webhook failing continuously for ``auto_disable_after`` is disabled with the reason, a WARNING line and a
metric, as is one whose endpoint answered 410 Gone. Nothing is dropped: the retrier sends the deliveries of a
disabled webhook to the dead-letter topic, from where `dlq replay` sends them once it is enabled again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from assethooks import metrics
from assethooks.clock import Clock, utc_now
from assethooks.durations import format_duration
from assethooks.errors import StoreUnavailableError
from assethooks.store.webhooks import WebhookStore

log = logging.getLogger(__name__)
FLUSH_EVERY = 5.0


class WebhookHealth:
    """Collects outcomes per webhook and acts on them."""

    def __init__(self, store: WebhookStore, *, auto_disable_after: float, clock: Clock = utc_now) -> None:
        self._store = store
        self._after = timedelta(seconds=auto_disable_after)
        self._clock = clock
        self._healthy: set[int] = set()
        self._failing: dict[int, datetime] = {}
        self._gone: dict[int, str] = {}
        self._circuits: dict[int, tuple[datetime | None, datetime]] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, webhook_id: int, *, ok: bool, at: datetime) -> None:
        """Note one attempt's outcome."""
        if ok:
            self._healthy.add(webhook_id)
            self._failing.pop(webhook_id, None)
        else:
            self._healthy.discard(webhook_id)
            self._failing.setdefault(webhook_id, at)

    def circuit(self, webhook_id: int, open_until: datetime | None, *, at: datetime) -> None:
        """Note that the webhook's circuit opened (until ``open_until``) or closed (``None``) at ``at``."""
        self._circuits[webhook_id] = (open_until, at)

    def gone(self, webhook_id: int, reason: str) -> None:
        """The endpoint asked for no more deliveries: disable the webhook at the next flush."""
        self._gone[webhook_id] = reason

    def start(self) -> None:
        """Flush regularly."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-health")

    async def close(self) -> None:
        """Flush once more and stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self) -> None:
        """Write the news to the store, then disable what must be."""
        healthy, failing, gone, circuits = self._healthy, self._failing, self._gone, self._circuits
        self._healthy, self._failing, self._gone, self._circuits = set(), {}, {}, {}
        try:
            await asyncio.to_thread(self._store.record_health, healthy, failing, circuits)
            for webhook_id, reason in gone.items():
                self._disabled(
                    webhook_id, reason, await asyncio.to_thread(self._store.disable, webhook_id, reason)
                )
            now = self._clock()
            for webhook in await asyncio.to_thread(self._store.failing_before, now - self._after):
                began = (webhook.failing_since or now).isoformat(timespec="seconds")
                limit = format_duration(self._after.total_seconds())
                reason = f"failing without a success since {began} (over {limit})"
                self._disabled(
                    webhook.id, reason, await asyncio.to_thread(self._store.disable, webhook.id, reason)
                )
        except StoreUnavailableError as exc:
            log.warning("webhook health not recorded, trying again later: %s", exc)
            self._healthy |= healthy - set(self._failing)
            for webhook_id, since in failing.items():
                self._failing.setdefault(webhook_id, since)
            self._gone = {**gone, **self._gone}
            self._circuits = {**circuits, **self._circuits}

    @staticmethod
    def _disabled(webhook_id: int, reason: str, done: object) -> None:
        if done is not None:
            metrics.WEBHOOKS_DISABLED.inc()
            log.warning("webhook %d disabled: %s", webhook_id, reason)
