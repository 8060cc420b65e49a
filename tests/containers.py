"""The session's broker and PostgreSQL from testcontainers, when ``ASSETHOOKS_TEST_CONTAINERS=1``.

Generic containers, configured the way docker-compose.yml configures them: Apache Kafka in KRaft mode from
``ASSETHOOKS_TEST_KAFKA_IMAGE`` (default the official ``apache/kafka:4.1.1``) through the ``KAFKA_*``
variables that image reads, and PostgreSQL from ``ASSETHOOKS_TEST_POSTGRES_IMAGE`` (default ``postgres:16``)
through ``POSTGRES_USER/PASSWORD/DB``. ``make test-containers`` sets both to the stand-ins it builds locally
(``scripts/containers.sh``). Each is published on a free loopback port and removed when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from testcontainers.core.container import DockerContainer

from tests.support import free_port, wait_until

KAFKA_IMAGE = os.environ.get("ASSETHOOKS_TEST_KAFKA_IMAGE", "apache/kafka:4.1.1")
POSTGRES_IMAGE = os.environ.get("ASSETHOOKS_TEST_POSTGRES_IMAGE", "postgres:16")
START_TIMEOUT = 120.0


def wanted() -> bool:
    """True when the session is to take its broker and database from testcontainers."""
    return os.environ.get("ASSETHOOKS_TEST_CONTAINERS") == "1"


def _published(container: DockerContainer, inside: int, port: int) -> DockerContainer:
    """``container`` with its port ``inside`` published on 127.0.0.1:``port`` only (``with_bind_ports``
    would publish it on every interface of the machine)."""
    container.ports[f"{inside}/tcp"] = ("127.0.0.1", port)  # type: ignore[assignment]  # docker-py's form
    return container


@contextmanager
def _running(container: DockerContainer, what: str) -> Iterator[DockerContainer]:
    try:
        container.start()  # inside: a container that started but failed its start-up is removed too
        yield container
    except BaseException:
        stdout, stderr = container.get_logs()
        print(f"--- {what} container logs ---\n{(stdout + stderr).decode(errors='replace')[-4000:]}")
        raise
    finally:
        container.stop()


@contextmanager
def kafka() -> Iterator[str]:
    """A single-node KRaft broker; yields its bootstrap address on loopback."""
    port = free_port()
    settings = {
        "NODE_ID": "1",
        "PROCESS_ROLES": "broker,controller",
        "LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "OFFSETS_TOPIC_NUM_PARTITIONS": "1",
        "TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    container = _published(DockerContainer(KAFKA_IMAGE), port, port)
    for name, value in settings.items():
        container.with_env(f"KAFKA_{name}", value)
    bootstrap = f"127.0.0.1:{port}"
    with _running(container, KAFKA_IMAGE):
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        wait_until(lambda: _answers(admin), timeout=START_TIMEOUT, what=f"the {KAFKA_IMAGE} broker to answer")
        yield bootstrap


def _answers(admin: AdminClient) -> bool:
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except KafkaException:  # not up yet
        return False


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server; yields the URL of its database ``assethooks`` on loopback."""
    port = free_port()
    container = (
        _published(DockerContainer(POSTGRES_IMAGE), 5432, port)
        .with_env("POSTGRES_USER", "assethooks")
        .with_env("POSTGRES_PASSWORD", "assethooks")
        .with_env("POSTGRES_DB", "assethooks")
    )
    url = f"postgresql://assethooks:assethooks@127.0.0.1:{port}/assethooks"
    with _running(container, POSTGRES_IMAGE):
        wait_until(
            lambda: _connects(url), timeout=START_TIMEOUT, what=f"the {POSTGRES_IMAGE} server to answer"
        )
        yield url


def _connects(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False
