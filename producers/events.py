"""Publishing asset events to the source topic, for upstream applications and ``assethooks publish``.

Every event is validated before it is sent, keyed by its asset id, and produced by an idempotent producer
with ``acks=all``::

    with EventPublisher(load_settings()) as publisher:
        publisher.publish(event)            # an AssetEvent, or the raw JSON bytes of one
    report = publisher.report               # what was sent and what failed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from assethooks.completion import Done
from assethooks.errors import InvalidEventError
from assethooks.kafka import RecordProducer
from assethooks.settings import Settings
from schemas.events import AssetEvent, EventName, parse_event


@dataclass
class PublishReport:
    """What a publisher has done: how many events the broker acknowledged, and which failed and why."""

    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)


def event_key(event: AssetEvent, key: str | None = None) -> str:
    """The Kafka key of ``event``: ``key`` when given, else the asset id (``asset.id`` for deletions)."""
    chosen = key or event.asset_key
    if not chosen:
        raise InvalidEventError(
            f"{EventName.ASSET_DELETED.value} without asset_id needs the asset id as key or in asset.id"
        )
    return chosen


class EventPublisher:
    """Validates and publishes asset events to the source topic."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self._producer = RecordProducer.for_command(settings, "publisher", timeout=timeout)
        self._topic = settings.source_topic
        self._timeout = timeout
        self.report = PublishReport()

    def publish(self, event: AssetEvent | bytes, *, key: str | None = None, label: str = "event") -> bool:
        """Validate and send one event; ``False`` (and a line in the report) when it is invalid.

        Raw bytes are sent exactly as given once they validate, so the delivered body is the same bytes.
        """
        try:
            parsed = parse_event(event) if isinstance(event, bytes) else event
            chosen_key = event_key(parsed, key)
        except InvalidEventError as exc:
            self.report.failed.append((label, str(exc)))
            return False
        body = event if isinstance(event, bytes) else parsed.to_json_bytes()
        self._producer.send(self._topic, body, key=chosen_key.encode(), then=self._on_delivery(label))
        return True

    def _on_delivery(self, label: str) -> Done:
        def done(error: BaseException | None) -> None:
            if error is None:
                self.report.sent += 1
            else:
                self.report.failed.append((label, str(error)))

        return done

    def flush(self) -> PublishReport:
        """Wait until every event sent so far is acknowledged or has failed; return the report."""
        left = self._producer.flush(self._timeout)
        if left:
            self.report.failed.append(
                ("(pending)", f"{left} events not acknowledged within {self._timeout:g}s")
            )
        return self.report

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.flush()
