"""Benchmark load: ~1 KB asset events, published up front or at a paced rate."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

EVENT_BYTES = 1000
ASSETS = 1_000
HOT_ASSET = ASSETS  # with skewed keys, one asset in ten events


def asset_of(number: int, *, skewed: bool = False) -> int:
    """The asset of event ``number``: spread over ``ASSETS`` assets, or one in ten to ``HOT_ASSET``."""
    return HOT_ASSET if skewed and number % 10 == 0 else number % ASSETS


def make_event(number: int, size: int = EVENT_BYTES, *, skewed: bool = False) -> bytes:
    """A valid ``asset.updated`` event of about ``size`` bytes for the asset ``asset_of(number)``."""
    asset = asset_of(number, skewed=skewed)
    envelope = {
        "event": "asset.updated",
        "timestamp": "2026-11-28T12:00:00+00:00",
        "source": "perfex_assets_module",
        "asset_id": asset,
        "asset": {
            "id": asset,
            "name": f"Laptop {asset}",
            "serial_number": f"SN-{asset:08d}",
            "status": "ready",
        },
        "data": {"seq": number, "changed": ["status"], "notes": ""},
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    envelope["data"]["notes"] = "n" * max(0, size - len(body))  # type: ignore[index]
    return json.dumps(envelope, separators=(",", ":")).encode()


def _producer(bootstrap: str, linger_ms: int, compression: str = "lz4") -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "batch.size": 1_000_000,
            "compression.type": compression,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def fill(bootstrap: str, topic: str, count: int, *, compression: str = "lz4", skewed: bool = False) -> None:
    """Publish ``count`` events to ``topic`` as fast as the broker takes them (``compression``: the
    producer's ``compression.type``, ``none`` for an uncompressed topic; ``skewed``: one asset has a tenth
    of the events)."""
    producer = _producer(bootstrap, 50, compression)
    failures: list[str] = []

    def report(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    for number in range(count):
        while True:
            try:
                producer.produce(
                    topic,
                    make_event(number, skewed=skewed),
                    key=str(asset_of(number, skewed=skewed)).encode(),
                    on_delivery=report,
                )
                break
            except BufferError:
                producer.poll(0.05)
        if number % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(300)
    if left or failures:
        raise RuntimeError(f"publishing failed: {left} left, {failures[:3]}")


@dataclass(frozen=True)
class Sent:
    """Where a paced event landed and when it was produced (its CreateTime, unix seconds)."""

    partition: int
    offset: int
    created: float


def paced_producer(bootstrap: str) -> Producer:
    """The producer of ``paced``: uncompressed, without lingering (the latency is the service's). Reuse
    it across calls: a new idempotent producer holds its first records for a second while it starts."""
    return _producer(bootstrap, 0, "none")


def paced(producer: Producer, topic: str, rate: float, seconds: float) -> list[Sent]:
    """Publish at ``rate`` events per second for ``seconds``, on a schedule (not send-after-reply)."""
    sent: list[Sent] = []

    def report(error: KafkaError | None, message: Message) -> None:
        if error is None:
            _kind, millis = message.timestamp()
            sent.append(Sent(message.partition() or 0, message.offset() or 0, millis / 1000))

    total = int(rate * seconds)
    started = time.perf_counter()
    for number in range(total):
        due = started + number / rate
        while (wait := due - time.perf_counter()) > 0:
            producer.poll(min(wait, 0.001))
        producer.produce(topic, make_event(number), key=str(asset_of(number)).encode(), on_delivery=report)
        producer.poll(0)
    producer.flush(60)
    return sent
