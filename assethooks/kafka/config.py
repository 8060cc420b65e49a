"""Kafka client set-up: the librdkafka configurations built from the settings, and the reachability check."""

from __future__ import annotations

import logging
import re
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from assethooks import __version__
from assethooks.errors import KafkaUnavailableError
from assethooks.settings import Settings

LIBRDKAFKA_LOGGER = logging.getLogger("assethooks.librdkafka")
FETCH_QUEUE_BACKOFF_MS = 10


def _report_error(error: KafkaError) -> None:
    # librdkafka retries transport errors by itself; a fatal error ends the client's usefulness.
    level = logging.ERROR if error.fatal() else logging.DEBUG
    LIBRDKAFKA_LOGGER.log(level, "kafka: %s", error.str())


def client_config(settings: Settings, role: str) -> dict[str, Any]:
    """What every client shares: bootstrap, security, client id, and librdkafka's logs routed to
    ``logging``. Credentials are taken out of their ``SecretStr`` only here, at the edge."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
        "client.id": f"assethooks-{role}/{__version__}",
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": _report_error,
        "socket.connection.setup.timeout.ms": 5000,
    }
    optional = {
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
        "ssl.key.password": settings.kafka_ssl_key_password,
    }
    for key, value in optional.items():
        if value is not None:
            config[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return config


def consumer_config(settings: Settings, role: str, group: str) -> dict[str, Any]:
    """An at-least-once consumer: offsets are stored by the application after processing, then
    committed in the background; a new group starts from the earliest record."""
    return {
        **client_config(settings, role),
        "group.id": group,
        "session.timeout.ms": int(settings.session_timeout * 1000),
        "heartbeat.interval.ms": int(settings.session_timeout * 1000 / 4),
        "enable.auto.commit": True,
        # Stored offsets go to the group soon after they move: a crash re-reads little (what it re-reads
        # is checked against the delivery log, consumers.ledger).
        "auto.commit.interval.ms": 100,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        # Chosen from measurements (README, "Performance"): librdkafka pre-fetches into a bounded queue and,
        # once it is full, waits fetch.queue.backoff.ms (1 s by default) before the next fetch. Draining
        # an uncompressed topic fills 1 MB at once, so a second-long pause came again and again: a quarter
        # of a core busy, delivering at a quarter of the rate. 10 ms keeps the queue fed; 1 MB and 200
        # messages per partition keep memory bounded on compressed topics too (a batch may inflate 10x).
        "fetch.wait.max.ms": 100,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "queued.max.messages.kbytes": 1024,
        "queued.min.messages": 200,
    }


def producer_config(settings: Settings, role: str) -> dict[str, Any]:
    """An idempotent producer: ``acks=all``, no duplicates from its own retries, order kept per key."""
    return {
        **client_config(settings, role),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }


def reader_config(settings: Settings, role: str) -> dict[str, Any]:
    """A consumer that never joins its group or commits: partitions are assigned by hand (the operator tools'
    reads, the metadata reader)."""
    return {
        **client_config(settings, role),
        "group.id": "assethooks-operator",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient for the configured cluster."""
    return AdminClient(client_config(settings, "admin"))


def check_reachable(settings: Settings, timeout: float = 5.0) -> None:
    """Ask the cluster for its metadata; raise ``KafkaUnavailableError`` naming the bootstrap address and
    the most telling cause (a failed authentication or TLS handshake rather than "transport failure")."""
    heard = _Collector()
    probe = logging.Logger("assethooks.kafka-check")  # not registered: its lines are only read here
    probe.addHandler(heard)
    config: dict[str, Any] = {**client_config(settings, "admin"), "logger": probe}
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # hand over the log lines queued meanwhile
        telling = [found.group(1).strip() for line in heard.lines if (found := _TELLING.search(line))]
        cause = telling[-1] if telling else describe(exc)
        raise KafkaUnavailableError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({cause})") from None


class _Collector(logging.Handler):
    """Keeps librdkafka's log lines of one client."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the line."""
        self.lines.append(record.getMessage())


# librdkafka's log lines that say more than "transport failure" about why the cluster cannot be used.
_TELLING = re.compile(r"((?:SASL|SSL)[^()]*)")


def describe(exc: KafkaException) -> str:
    """The most telling text of a librdkafka exception."""
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
