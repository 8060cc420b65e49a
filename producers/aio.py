"""An asyncio face for confluent-kafka's producer: ``await send(...)`` returns once the broker has the
record (``acks=all``), which is what "durably handed to a retry tier or the DLQ" means.

A background thread serves librdkafka's delivery reports and hands each to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from assethooks.completion import Done
from assethooks.errors import KafkaUnavailableError, RecordTooLargeError

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class AsyncProducer:
    """Produces records and awaits their acknowledgement; waits while librdkafka's queue is full."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll_reports, name="producer-reports", daemon=True)

    def start(self) -> None:
        """Begin serving delivery reports; call from the event loop that will await ``send``."""
        self._loop = asyncio.get_running_loop()
        self._poller.start()

    async def send(
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

        def report(error: KafkaError | None, _message: Message) -> None:
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
        """Wait for outstanding records (up to ``timeout``) and stop; return how many were left."""
        left = await asyncio.to_thread(self._producer.flush, timeout)
        self._closing.set()
        if self._poller.is_alive():
            await asyncio.to_thread(self._poller.join)
        return left


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
