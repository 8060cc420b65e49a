"""Assembles one member of the consumer groups: the ``dispatcher``, the ``retrier``, the ``projector``, or
any of them together in one process (``run all``: all three); ``run … --processes N`` starts N such members
under ``consumers.supervisor``.

Start-up checks fail fast with one clear line: the database schema is current, Kafka answers, and the
topics exist (created when missing). The groups of a process share one ``Services``: the webhook
subscriptions, the delivery pipeline (HTTP sender, delivery-log writer, hand-off producer, webhook health),
the projector and the delivery ledger. Besides the groups, a process purges the delivery log past
``log_retention`` once a day and, with a metrics port, serves ``/metrics`` and keeps the dead-letter
topic's size measured. One group failing stops the others, which finish their work first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from sqlalchemy import Engine

from assethooks import metrics
from assethooks.alerts import FieldNames
from assethooks.clock import utc_now
from assethooks.delivery import HttpSender
from assethooks.durations import format_duration
from assethooks.errors import AssetHooksError, StoreUnavailableError
from assethooks.kafka import MetadataReader, RecordProducer, consumer_config, ensure_topics, producer_config
from assethooks.secrets import SecretBox
from assethooks.settings import Settings
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import DeliveryLogWriter, purge_attempts
from assethooks.store.migrate import require_current
from assethooks.store.webhooks import WebhookStore
from consumers.dispatcher import Dispatcher
from consumers.health import WebhookHealth
from consumers.ledger import DeliveryLedger
from consumers.pacing import GroupShare
from consumers.pipeline import DeliveryPipeline
from consumers.projector import Projector
from consumers.retrier import Retrier
from consumers.runtime import ConsumerRuntime, Handler
from consumers.subscriptions import SubscriptionCache
from producers.handoff import Handoff
from schemas.events import EventName

log = logging.getLogger(__name__)

ROLES = ("dispatcher", "retrier", "projector")
STATS_EVERY_MS = 5000  # librdkafka statistics (consumer lag) for the metrics


@dataclass(frozen=True)
class Services:
    """What the consumer groups of one process share."""

    settings: Settings
    pipeline: DeliveryPipeline
    subscriptions: SubscriptionCache
    projector: Projector
    ledger: DeliveryLedger
    share: GroupShare  # of the webhooks' rate limits, by the partitions this process owns


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Open the store, the HTTP sender, the delivery log and the producer; close them in reverse order."""
    engine = make_engine(settings.database_url.get_secret_value())
    await asyncio.to_thread(require_current, engine)
    results = await asyncio.to_thread(ensure_topics, settings)
    for result in results:
        if result.created:
            log.info("created topic %s", result.spec.name)
    counts = {result.spec.name: result.partitions for result in results}
    share = GroupShare(
        {
            settings.dispatcher_group: counts.get(settings.source_topic, 0),
            settings.retrier_group: sum(counts.get(topic, 0) for topic in settings.retry_topics),
        }
    )
    keys = settings.encryption_keys
    store = WebhookStore(engine, box=SecretBox(None if keys is None else keys.get_secret_value()))
    subscriptions = SubscriptionCache(
        store, [event.value for event in EventName], interval=settings.webhook_refresh_interval
    )
    await subscriptions.start()
    producer = RecordProducer(producer_config(settings, "handoff"))
    producer.start()
    log_writer = DeliveryLogWriter(engine)
    log_writer.start()
    retention = asyncio.create_task(keep_log_retention(engine, settings.log_retention), name="log-retention")
    try:
        async with HttpSender.for_settings(settings) as sender:
            health = WebhookHealth(store, auto_disable_after=settings.auto_disable_after)
            health.start()
            pipeline = DeliveryPipeline(
                settings, sender, log_writer, Handoff(producer, settings.dlq_topic), health, share
            )
            pipeline.start()
            try:
                projector = Projector(engine, FieldNames.from_settings(settings))
                projector.start()
                try:
                    ledger = DeliveryLedger(engine)
                    yield Services(settings, pipeline, subscriptions, projector, ledger, share)
                finally:
                    await projector.close()
            finally:
                await pipeline.close()
                await health.close()
    finally:
        retention.cancel()
        await asyncio.gather(retention, return_exceptions=True)
        await log_writer.close()
        left = await producer.close()
        if left:
            log.error("%d records not acknowledged by Kafka at shutdown", left)
        await subscriptions.close()
        engine.dispose()


async def keep_log_retention(engine: Engine, retention: float, *, every: float = 86400.0) -> None:
    """Delete delivery-log entries older than ``retention`` now and then once a day."""
    while True:
        cutoff = utc_now() - timedelta(seconds=retention)
        try:
            removed = await asyncio.to_thread(purge_attempts, engine, cutoff)
            log.info("delivery log: purged %d entries older than %s", removed, format_duration(retention))
        except StoreUnavailableError as exc:
            log.warning("delivery log not purged: %s", exc)
        await asyncio.sleep(every)


@asynccontextmanager
async def _metrics_endpoint(settings: Settings, address: tuple[str, int] | None) -> AsyncIterator[None]:
    if address is None:
        yield
        return
    runner = await metrics.serve_metrics(*address)
    sizes = asyncio.create_task(watch_dead_letter_size(settings), name="dead-letter-size")
    log.info("metrics on http://%s:%d/metrics", *address)
    try:
        yield
    finally:
        sizes.cancel()
        await asyncio.gather(sizes, return_exceptions=True)
        await runner.cleanup()


def runtimes(shared: Services, roles: Collection[str]) -> list[ConsumerRuntime]:
    """One consumer runtime per role."""
    settings = shared.settings
    groups: dict[str, tuple[str, list[str], Handler]] = {
        "dispatcher": (
            settings.dispatcher_group,
            [settings.source_topic],
            Dispatcher(shared.pipeline, shared.subscriptions, shared.ledger),
        ),
        "retrier": (
            settings.retrier_group,
            list(settings.retry_topics),
            Retrier(shared.pipeline, shared.subscriptions, shared.ledger, settings),
        ),
        "projector": (settings.projector_group, [settings.source_topic], shared.projector),
    }
    found = []
    for role in ROLES:
        if role not in roles:
            continue
        group, topics, handler = groups[role]
        config = {
            **consumer_config(settings, role, group),
            "statistics.interval.ms": STATS_EVERY_MS,
            "stats_cb": metrics.record_consumer_stats(group, frozenset(settings.retry_topics)),
        }
        found.append(
            ConsumerRuntime(
                config,
                topics,
                handler,
                max_in_flight=settings.max_in_flight,
                shutdown_timeout=settings.shutdown_timeout,
                hurry=shared.pipeline.hurry,
                owned=partial(shared.share.owned, group),  # the projector's group is not counted
            )
        )
    return found


async def watch_dead_letter_size(settings: Settings, every: float = 15.0) -> None:
    """Keep ``assethooks_dead_letter_records`` at the number of records the dead-letter topic holds, asking
    one metadata reader kept open meanwhile."""
    reader = MetadataReader(settings)
    try:
        while True:
            try:
                metrics.DEAD_LETTER_RECORDS.set(await asyncio.to_thread(reader.size, settings.dlq_topic))
            except AssetHooksError as exc:
                log.debug("dead-letter size not measured: %s", exc)
            await asyncio.sleep(every)
    finally:
        await asyncio.to_thread(reader.close)


async def serve(
    settings: Settings,
    roles: Collection[str],
    stop: asyncio.Event,
    *,
    metrics_address: tuple[str, int] | None = None,
    member: int | None = None,
) -> None:
    """Run the consumer groups of ``roles`` until ``stop`` is set or one of them fails; serve metrics on
    ``metrics_address`` when given."""
    async with services(settings) as shared, _metrics_endpoint(settings, metrics_address):
        members = runtimes(shared, roles)
        who = "" if member is None else f" as member {member} (pid {os.getpid()})"
        log.info("running %s on %s%s", " and ".join(roles), settings.kafka_bootstrap, who)
        tasks = [asyncio.create_task(member.run(stop)) for member in members]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            stop.set()  # one member failing stops the others, which then finish their work
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
