"""The one producer wrapper of the service, used two ways:

- by a command (``assethooks publish``, the operator tools): ``send`` queues a record, waiting while
  librdkafka's queue is full, and ``flush`` (or ``acknowledge``, which raises) waits for the broker; delivery
  reports are served in the calling thread, inside ``send`` and ``flush``;
- inside an event loop (the consumer groups' retry and dead-letter hand-off), once ``start`` ed: a thread
  serves the delivery reports and hands each to the loop. ``produce`` takes a callback (no future per
  record: the hot path of moving deliveries to a retry tier in bulk); ``await deliver(...)`` returns once
  the broker has the record (``acks=all``), which is what "durably handed on" means.

A refused record is reported as ``RecordTooLargeError`` when it is over the size limit, else as
``KafkaUnavailableError``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial
from types import TracebackType
from typing import Any, Self

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from assethooks.completion import Done
from assethooks.errors import KafkaUnavailableError, RecordTooLargeError
from assethooks.kafka.config import check_reachable, producer_config
from assethooks.kafka.protocols import Headers, Producer
from assethooks.settings import Settings

log = logging.getLogger(__name__)


class RecordProducer:
    """An idempotent producer (``producer_config``): records are acknowledged by every in-sync replica."""

    def __init__(self, config: dict[str, Any], *, client: Producer | None = None) -> None:
        self._producer: Producer = confluent_kafka.Producer(config) if client is None else client
        self._refused: list[str] = []  # why records sent without a callback were not acknowledged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll_reports, name="producer-reports", daemon=True)

    @classmethod
    def for_command(cls, settings: Settings, role: str, *, timeout: float = 30.0) -> Self:
        """A producer for one command: fails first, with the reason, when the cluster cannot be reached;
        librdkafka gives up on a record after ``timeout`` seconds."""
        check_reachable(settings)
        return cls({**producer_config(settings, role), "message.timeout.ms": int(timeout * 1000)})

    # -- commands: delivery reports in the calling thread ----------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Headers = (),
        then: Done | None = None,
    ) -> None:
        """Queue one record, waiting while librdkafka's queue is full. ``then`` is called (in this thread,
        in a later ``send`` or ``flush``) with ``None`` once the broker acknowledged it, or with the error;
        without ``then`` a failure is kept for ``acknowledge``."""
        report = self._keep_refusal if then is None else partial(_report_here, then)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise _as_error(exc.args[0]) from None
        self._producer.poll(0)

    def _keep_refusal(self, error: KafkaError | None, _record: Any) -> None:
        if error is not None:
            self._refused.append(error.str())

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` seconds for every queued record; return how many were not acknowledged."""
        return self._producer.flush(timeout)

    def acknowledge(self, timeout: float = 30.0) -> None:
        """Wait for every queued record; raise ``KafkaUnavailableError`` if any sent without a callback was
        not acknowledged."""
        left = self._producer.flush(timeout)
        if left or self._refused:
            reason = (
                self._refused[0] if self._refused else f"{left} records not acknowledged within {timeout:g}s"
            )
            self._refused.clear()
            raise KafkaUnavailableError(f"Kafka did not take every record: {reason}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.acknowledge()

    # -- in an event loop: delivery reports handed to the loop -----------------------------------------

    def start(self) -> None:
        """Begin serving delivery reports; call from the event loop that will await ``deliver``."""
        self._loop = asyncio.get_running_loop()
        self._poller.start()

    async def deliver(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Headers = ()
    ) -> None:
        """Produce one record and return when the broker acknowledged it.

        Raises ``KafkaUnavailableError`` when librdkafka gives up on it (``message.timeout.ms``).
        """
        assert self._loop is not None, "call start() first"
        done: asyncio.Future[None] = self._loop.create_future()
        while not self.produce(topic, value, key=key, headers=headers, then=partial(_settle, done)):
            await asyncio.sleep(0.01)  # librdkafka's local queue is full: let the broker catch up
        await done

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Headers,
        then: Done,
    ) -> bool:
        """Produce one record; ``then`` is called on the event loop with ``None`` once the broker
        acknowledged it, or with the error (``KafkaUnavailableError``, ``RecordTooLargeError``). ``False``:
        librdkafka's local queue is full, nothing was produced (try again a little later). No future: a
        hot path when deliveries move to a retry tier in bulk."""
        assert self._loop is not None, "call start() first"
        loop = self._loop

        def report(error: KafkaError | None, _record: Any) -> None:
            loop.call_soon_threadsafe(then, None if error is None else _as_error(error))

        try:
            self._producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
        except BufferError:
            return False
        except KafkaException as exc:
            raise _as_error(exc.args[0]) from None
        return True

    def _poll_reports(self) -> None:
        while not self._closing.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # a report that could not be handed over must not end the reports
                log.exception("producer delivery report failed")

    async def close(self, timeout: float = 30.0) -> int:
        """Wait for outstanding records (up to ``timeout``) and stop serving reports; return how many were
        left."""
        left = await asyncio.to_thread(self._producer.flush, timeout)
        self._closing.set()
        if self._poller.is_alive():
            await asyncio.to_thread(self._poller.join)
        return left


def _report_here(then: Done, error: KafkaError | None, _record: Any) -> None:
    then(None if error is None else _as_error(error))


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _as_error(error: KafkaError) -> Exception:
    if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return RecordTooLargeError(f"record too large for Kafka: {error.str()}")
    return KafkaUnavailableError(f"Kafka did not accept a record: {error.str()}")
