"""What travels through the retry-tier topics and the dead-letter topic.

A retry or dead-letter record keeps the event's exact bytes as its value (so the body that is signed and
sent never changes and any Kafka tool shows it) and carries its metadata as JSON in one header:
``assethooks-task`` (a ``DeliveryTask``) on retry records, ``assethooks-dead-letter`` (a ``DeadLetter``)
on dead-letter records.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Final

from pydantic import BaseModel, ConfigDict

TASK_HEADER: Final = "assethooks-task"
DEAD_LETTER_HEADER: Final = "assethooks-dead-letter"
DELIVERY_NAMESPACE: Final = uuid.UUID("6f1d1c0e-3a52-4c55-9d0b-5b8f1b7e2a61")
_NAMESPACE_BYTES: Final = DELIVERY_NAMESPACE.bytes


@dataclass(frozen=True, slots=True)  # a dataclass, not a model: one is made per record (a hot path)
class SourceRef:
    """Where an event was read: topic, partition, offset and the record's timestamp (ms)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


def delivery_id_for(source: SourceRef, webhook_id: int) -> str:
    """The id of the delivery of one event to one webhook: the same on every attempt and every replay."""
    # uuid.uuid5(DELIVERY_NAMESPACE, "topic/partition/offset/webhook"), without UUID objects (a hot path).
    name = b"%b%d/%d/%d" % (_topic_prefix(source.topic), source.partition, source.offset, webhook_id)
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@lru_cache(maxsize=1024)
def _topic_prefix(topic: str) -> bytes:
    return _NAMESPACE_BYTES + topic.encode() + b"/"


class AttemptRecord(BaseModel):
    """The outcome of one delivery attempt, as kept in the task's history."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryTask(BaseModel):
    """A delivery of one event to one webhook waiting for its next attempt."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    webhook_id: int
    event: str
    asset_key: str | None
    attempt: int  # the number of the attempt this task is waiting for, from 2 up
    attempt_base: int = 0  # attempts made before the current budget (a replay grants a fresh one)
    resend: bool = False  # an explicit re-send: sent even if the delivery succeeded before
    not_before: datetime
    source: SourceRef
    history: tuple[AttemptRecord, ...] = ()

    @classmethod
    def retry(
        cls,
        *,
        delivery_id: str,
        webhook_id: int,
        event: str,
        asset_key: str | None,
        attempt: int,
        attempt_base: int,
        resend: bool,
        not_before: datetime,
        source: SourceRef,
        history: tuple[AttemptRecord, ...],
    ) -> DeliveryTask:
        """A delivery in progress waiting for ``attempt`` (built from values that are valid already: no
        validation, this is the delivery path)."""
        return cls.model_construct(
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event=event,
            asset_key=asset_key,
            attempt=attempt,
            attempt_base=attempt_base,
            resend=resend,
            not_before=not_before,
            source=source,
            history=history,
        )

    @classmethod
    def resend_of(
        cls,
        *,
        delivery_id: str,
        webhook_id: int,
        event: str,
        asset_key: str | None,
        made: int,
        now: datetime,
        source: SourceRef,
        history: tuple[AttemptRecord, ...] = (),
    ) -> DeliveryTask:
        """An explicit re-send (``logs retry``, ``dlq replay``, ``replay``) of a delivery ``made`` attempts
        of which were made: the next attempt number, a fresh retry budget, due ``now``, sent even if the
        delivery succeeded before."""
        return cls(
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event=event,
            asset_key=asset_key,
            attempt=made + 1,
            attempt_base=made,
            resend=True,
            not_before=now,
            source=source,
            history=history,
        )


class DeadLetterKind(StrEnum):
    """Why a record ended in the dead-letter topic."""

    INVALID_EVENT = "invalid-event"  # the input record is not a valid asset event
    ATTEMPTS_EXHAUSTED = "attempts-exhausted"  # every scheduled attempt failed
    UNDELIVERABLE = "undeliverable"  # a failure no retry can fix (blocked URL, webhook gone)


class DeadLetter(BaseModel):
    """The metadata of a dead-letter record; the record's value is the original bytes."""

    model_config = ConfigDict(frozen=True)

    kind: DeadLetterKind
    reason: str
    dead_at: datetime
    source: SourceRef
    task: DeliveryTask | None = None


def task_headers(task: DeliveryTask) -> list[tuple[str, bytes]]:
    """The headers of a retry record carrying ``task``."""
    return [(TASK_HEADER, task.model_dump_json().encode())]


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter record carrying ``letter``."""
    return [(DEAD_LETTER_HEADER, letter.model_dump_json().encode())]


def key_bytes(asset_key: str | None) -> bytes | None:
    """The Kafka key for an asset id."""
    return asset_key.encode() if asset_key else None


RecordHeaders = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


def header_value(headers: RecordHeaders, name: str) -> bytes | None:
    """The last value of header ``name`` on a record, as bytes, or ``None``."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    found = None
    for key, value in pairs:
        if key == name:
            found = value.encode() if isinstance(value, str) else value
    return found
