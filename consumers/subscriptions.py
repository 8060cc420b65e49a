"""The webhook subscriptions a running consumer matches against, refreshed from the store every few
seconds so that a change reaches every instance quickly without a query per event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from assethooks.errors import StoreUnavailableError
from assethooks.store.webhooks import WebhookStore
from schemas.webhooks import Webhook

log = logging.getLogger(__name__)


def index_by_event(webhooks: Iterable[Webhook], events: Iterable[str]) -> dict[str, tuple[Webhook, ...]]:
    """For each of ``events``, the webhooks that would receive it (active and subscribed), by id."""
    chosen = sorted(webhooks, key=lambda webhook: webhook.id)
    return {event: tuple(webhook for webhook in chosen if webhook.subscribes_to(event)) for event in events}


class SubscriptionCache:
    """An in-memory copy of every webhook, reloaded every ``interval`` seconds."""

    def __init__(self, store: WebhookStore, events: Iterable[str], *, interval: float) -> None:
        self._store = store
        self._events = tuple(events)
        self._interval = interval
        self._by_id: Mapping[int, Webhook] = {}
        self._by_event: Mapping[str, tuple[Webhook, ...]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the webhooks once (failing loudly if the store is unusable), then keep refreshing."""
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._keep_fresh(), name="subscriptions")

    async def refresh(self) -> None:
        """Reload every webhook from the store; log what changed since the last load."""
        webhooks = await asyncio.to_thread(self._store.list)
        before, self._by_id = self._by_id, {webhook.id: webhook for webhook in webhooks}
        self._by_event = index_by_event(webhooks, self._events)
        if self._task is None:
            log.info("%d webhooks loaded", len(webhooks))
            return
        for webhook_id in sorted(before.keys() | self._by_id.keys()):
            old, new = before.get(webhook_id), self._by_id.get(webhook_id)
            if old != new:
                change = "added" if old is None else "removed" if new is None else "changed"
                log.info("webhook %d %s", webhook_id, change)

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except StoreUnavailableError as exc:
                log.warning("webhooks not refreshed, using the last known ones: %s", exc)
            except Exception:  # keep refreshing: a passing problem must not freeze the subscriptions
                log.exception("webhooks not refreshed, using the last known ones")

    def matching(self, event: str) -> tuple[Webhook, ...]:
        """The webhooks that receive ``event`` now."""
        return self._by_event.get(event, ())

    def get(self, webhook_id: int) -> Webhook | None:
        """The webhook with ``webhook_id`` as last loaded, or ``None`` if it does not exist."""
        return self._by_id.get(webhook_id)

    async def close(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
