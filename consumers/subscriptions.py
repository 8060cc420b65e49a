"""The webhook subscriptions a running consumer matches against, refreshed from the store every few
seconds so that a change reaches every instance quickly without a query per event.

Payload filters are compiled here, once per webhook version: a refresh reuses the compiled filter of a
webhook whose expression did not change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from assethooks import metrics
from assethooks.errors import StoreUnavailableError
from assethooks.store.webhooks import WebhookStore
from schemas.filters import PayloadFilter, split_by_filters
from schemas.webhooks import Webhook

log = logging.getLogger(__name__)

Filters = tuple[PayloadFilter | None, ...]  # one per webhook of a route, None where it has no filter
Route = tuple[tuple[Webhook, ...], Filters | None]  # the webhooks of an event; their filters, if any has one
NO_ROUTE: Route = ((), None)


def index_by_event(webhooks: Iterable[Webhook], events: Iterable[str]) -> dict[str, tuple[Webhook, ...]]:
    """For each of ``events``, the webhooks that would receive it (active and subscribed), by id."""
    chosen = sorted(webhooks, key=lambda webhook: webhook.id)
    return {event: tuple(webhook for webhook in chosen if webhook.subscribes_to(event)) for event in events}


def compile_filters(
    webhooks: Iterable[Webhook], known: Mapping[int, PayloadFilter]
) -> dict[int, PayloadFilter]:
    """The compiled filter of each webhook that has one, by id; one from ``known`` when its expression is
    the same (the webhooks are valid: their filters compiled when they were loaded)."""
    compiled: dict[int, PayloadFilter] = {}
    for webhook in webhooks:
        if webhook.filter is None:
            continue
        before = known.get(webhook.id)
        reused = before is not None and before.expression == webhook.filter
        compiled[webhook.id] = before if reused and before else PayloadFilter(webhook.id, webhook.filter)
    return compiled


def routes_by_event(
    by_event: Mapping[str, tuple[Webhook, ...]], filters: Mapping[int, PayloadFilter]
) -> dict[str, Route]:
    """Each event's webhooks with their filters (``None`` in place of the filters when none has one)."""
    routes: dict[str, Route] = {}
    for event, webhooks in by_event.items():
        chosen = tuple(filters.get(webhook.id) for webhook in webhooks)
        routes[event] = (webhooks, chosen if any(chosen) else None)
    return routes


def accepted(webhooks: tuple[Webhook, ...], filters: Filters, body: bytes) -> tuple[Webhook, ...]:
    """The webhooks of a route whose filter accepts the event ``body`` (parsed once for all of them); each
    rejection counted in ``assethooks_filtered_total``."""
    kept, rejected = split_by_filters(webhooks, filters, body)
    for webhook in rejected:
        metrics.filtered_out(webhook.id)
    return tuple(kept)


class SubscriptionCache:
    """An in-memory copy of every webhook, reloaded every ``interval`` seconds."""

    def __init__(self, store: WebhookStore, events: Iterable[str], *, interval: float) -> None:
        self._store = store
        self._events = tuple(events)
        self._interval = interval
        self._by_id: Mapping[int, Webhook] = {}
        self._filters: Mapping[int, PayloadFilter] = {}
        self._routes: Mapping[str, Route] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the webhooks once (failing loudly if the store is unusable), then keep refreshing."""
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._keep_fresh(), name="subscriptions")

    async def refresh(self) -> None:
        """Reload every webhook from the store; log what changed since the last load."""
        webhooks = await asyncio.to_thread(self._store.list)
        before, self._by_id = self._by_id, {webhook.id: webhook for webhook in webhooks}
        self._filters = compile_filters(webhooks, self._filters)
        self._routes = routes_by_event(index_by_event(webhooks, self._events), self._filters)
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

    def route(self, event: str) -> Route:
        """The webhooks that receive ``event`` now, and their compiled filters (``None``: no filter)."""
        return self._routes.get(event, NO_ROUTE)

    def get(self, webhook_id: int) -> Webhook | None:
        """The webhook with ``webhook_id`` as last loaded, or ``None`` if it does not exist."""
        return self._by_id.get(webhook_id)

    async def close(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
